use super::*;

fn map(pairs: &[(&str, Value)]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.push(*k, v.clone());
    }
    Value::Map(m)
}

#[test]
fn json_inputs_become_one_record_per_row() {
    let body = br#"{"id": "r1", "inputs": [
        {"name": "features", "shape": [2, 4], "datatype": "FP32",
         "data": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]},
        {"name": "tag", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
    ], "outputs": [{"name": "label"}]}"#;
    let r = InferRequest::parse(body, None).unwrap();
    assert_eq!(r.id.as_deref(), Some("r1"));
    assert_eq!(r.rows().unwrap(), 2);
    let records = r.records().unwrap();
    let f = |x: f32| Value::Float(f64::from(x));
    assert_eq!(
        records[1],
        map(&[
            (
                "features",
                Value::Array(vec![f(6.2), f(2.9), f(4.3), f(1.3)])
            ),
            ("tag", Value::String("b".into())),
        ])
    );
    assert_eq!(r.outputs[0].name, "label");
    assert!(!r.binary_output("label"));
}

#[test]
fn binary_inputs_follow_the_json_header() {
    let header = br#"{"inputs": [
        {"name": "x", "shape": [3], "datatype": "INT32", "parameters": {"binary_data_size": 12}},
        {"name": "s", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": 20}},
        {"name": "h", "shape": [3], "datatype": "FP16", "parameters": {"binary_data_size": 6}}
    ], "parameters": {"binary_data_output": true}}"#;
    let mut body = header.to_vec();
    for i in [1i32, -2, 3] {
        body.extend_from_slice(&i.to_le_bytes());
    }
    for s in ["ab", "", "héllo"] {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    for h in [0x3c00u16, 0xc000, 0x3555] {
        body.extend_from_slice(&h.to_le_bytes());
    }
    let r = InferRequest::parse(&body, Some(header.len())).unwrap();
    assert_eq!(
        r.inputs[0].data,
        vec![Value::Int(1), Value::Int(-2), Value::Int(3)]
    );
    assert_eq!(r.inputs[1].data[2], Value::String("héllo".into()));
    assert_eq!(r.inputs[2].data[0], Value::Float(1.0));
    assert_eq!(r.inputs[2].data[1], Value::Float(-2.0));
    assert!(matches!(r.inputs[2].data[2], Value::Float(x) if (x - 0.3333).abs() < 1e-3));
    assert!(r.binary_output("anything"));
}

#[test]
fn bad_requests_say_which_input_and_why() {
    let cases: [(&[u8], Option<usize>, &str); 8] = [
        (br#"{"inputs": []}"#, None, "no inputs"),
        (
            br#"{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}"#,
            None,
            "input 'x': shape [3] holds 3 elements but 2 were given",
        ),
        (
            br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]}"#,
            None,
            "unknown datatype 'FP99'",
        ),
        (
            br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [300]}]}"#,
            None,
            "300 is out of range for INT8",
        ),
        (
            br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "BOOL", "data": ["yes"]}]}"#,
            None,
            "input 'x', element 0: \"yes\" is not a BOOL value",
        ),
        (
            br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "parameters": {"binary_data_size": 8}}]}"#,
            Some(200),
            "Inference-Header-Content-Length is 200",
        ),
        (
            br#"{"inputs": [{"name": "x", "shape": [-1], "datatype": "INT32", "data": []}]}"#,
            None,
            "negative dimension",
        ),
        (br#"{"inputs": "x"}"#, None, "not valid"),
    ];
    for (body, header, want) in cases {
        let e = InferRequest::parse(body, header).unwrap_err();
        assert!(e.0.contains(want), "{e} does not say {want}");
    }
    let r = InferRequest::parse(
        br#"{"inputs": [{"name": "a", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                        {"name": "b", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}]}"#,
        None,
    )
    .unwrap();
    assert!(r
        .records()
        .unwrap_err()
        .0
        .contains("differ in their first dimension"));
}

#[test]
fn answers_become_output_tensors() {
    let answers = vec![
        map(&[
            ("label", Value::Int(1)),
            (
                "p",
                Value::Array(vec![Value::Float(0.2), Value::Float(0.8)]),
            ),
        ]),
        map(&[
            ("label", Value::Int(0)),
            ("p", Value::Array(vec![Value::Float(0.9), Value::Int(0)])),
        ]),
    ];
    let t = outputs_of(&answers, "output-0").unwrap();
    assert_eq!(t[0].name, "label");
    assert_eq!(
        (t[0].datatype, t[0].shape.clone()),
        (Datatype::Int64, vec![2])
    );
    assert_eq!(
        (t[1].datatype, t[1].shape.clone()),
        (Datatype::Fp64, vec![2, 2])
    );
    let scalars = outputs_of(&[Value::String("setosa".into())], "class").unwrap();
    assert_eq!(scalars[0].name, "class");
    assert_eq!(scalars[0].datatype, Datatype::Bytes);
    let ragged = outputs_of(
        &[Value::Array(vec![Value::Int(1)]), Value::Array(vec![])],
        "o",
    )
    .unwrap_err();
    assert!(ragged.0.contains("cannot be one tensor"), "{ragged}");
    let ints = |xs: &[i128]| Value::Array(xs.iter().map(|&x| Value::Int(x)).collect());
    for mixed in [
        vec![Value::Int(1), ints(&[2])],
        vec![ints(&[2]), Value::Int(1)],
        vec![Value::Array(vec![]), Value::Array(vec![ints(&[1])])],
        vec![Value::Array(vec![ints(&[1])]), Value::Array(vec![])],
        vec![ints(&[1, 2]), Value::Array(vec![ints(&[1]), ints(&[2])])],
    ] {
        let e = outputs_of(&mixed, "o").unwrap_err();
        assert!(e.0.contains("cannot be one tensor"), "{mixed:?}: {e}");
    }
    let empties = outputs_of(&[Value::Array(vec![]), Value::Array(vec![])], "o").unwrap();
    assert_eq!(empties[0].shape, vec![2, 0]);
    let nested = outputs_of(
        &[
            Value::Array(vec![ints(&[1, 2]), ints(&[3, 4])]),
            Value::Array(vec![ints(&[5, 6]), ints(&[7, 8])]),
        ],
        "o",
    )
    .unwrap();
    assert_eq!(nested[0].shape, vec![2, 2, 2]);
    let optional = outputs_of(&[map(&[("a", Value::Int(1)), ("tag", Value::Null)])], "o").unwrap();
    assert_eq!(optional.len(), 1, "{optional:?}");
    let missing = outputs_of(&[map(&[("a", Value::Int(1))]), map(&[])], "o").unwrap_err();
    assert!(missing.0.contains("has no 'a'"), "{missing}");
}

#[test]
fn responses_are_json_or_json_then_binary() {
    let r = InferResponse {
        model_name: "iris".into(),
        model_version: None,
        id: Some("7".into()),
        outputs: vec![
            Tensor {
                name: "label".into(),
                datatype: Datatype::Int64,
                shape: vec![2],
                data: vec![Value::Int(1), Value::Int(2)],
            },
            Tensor {
                name: "name".into(),
                datatype: Datatype::Bytes,
                shape: vec![1],
                data: vec![Value::String("ab".into())],
            },
        ],
    };
    let (json, header) = r.encode(|_| false);
    assert_eq!(header, None);
    let doc: Json = serde_json::from_slice(&json).unwrap();
    assert_eq!(doc["outputs"][0]["data"], serde_json::json!([1, 2]));
    assert_eq!(doc["id"], "7");
    let (body, header) = r.encode(|n| n == "label");
    let header = header.unwrap();
    let doc: Json = serde_json::from_slice(&body[..header]).unwrap();
    assert_eq!(doc["outputs"][0]["parameters"]["binary_data_size"], 16);
    assert!(doc["outputs"][0].get("data").is_none());
    assert_eq!(doc["outputs"][1]["data"], serde_json::json!(["ab"]));
    assert_eq!(&body[header..header + 8], &1i64.to_le_bytes());
    // What goes out in binary reads back the same.
    let back = binary::decode("label", Datatype::Int64, &body[header..]).unwrap();
    assert_eq!(back, r.outputs[0].data);
}

#[test]
fn avro_schemas_give_tensor_metadata() {
    let schema = serde_json::json!({"type": "record", "name": "in", "fields": [
        {"name": "sepal_length", "type": "double"},
        {"name": "n", "type": ["null", "long"]},
        {"name": "v", "type": {"type": "array", "items": "float"}},
        {"name": "s", "type": "string"}
    ]});
    let t = tensors_of_avro(&schema, "x");
    let got: Vec<(&str, &str, Vec<i64>)> = t
        .iter()
        .map(|m| (m.name.as_str(), m.datatype.as_str(), m.shape.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("sepal_length", "FP64", vec![-1]),
            ("n", "INT64", vec![-1]),
            ("v", "FP32", vec![-1, -1]),
            ("s", "BYTES", vec![-1]),
        ]
    );
    assert_eq!(
        tensors_of_avro(&serde_json::json!("double"), "y")[0].name,
        "y"
    );
}
