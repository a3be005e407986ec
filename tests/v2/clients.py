"""The engine's Open Inference Protocol routes through the clients others wrote:
tritonclient's HTTP client (JSON and binary tensors), kserve's REST client, and plain
requests for the errors. Run by crates/engine-bin/tests/inference_protocol.rs with the
engine's address in ENGINE_URL, its token in ENGINE_TOKEN and the deployed model's name
in MODEL (tests/models/v2-iris). Exits non-zero on the first failed check."""

import asyncio
import json
import os
import urllib.error
import urllib.request

import numpy as np

URL = os.environ["ENGINE_URL"]
TOKEN = os.environ["ENGINE_TOKEN"]
MODEL = os.environ["MODEL"]


def auth():
    """The token header, a fresh dict each call: tritonclient adds its own headers to the
    dict it is given."""
    return {"Authorization": f"Bearer {TOKEN}"}


HOST = URL.removeprefix("http://")

FEATURES = np.array(
    [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]], dtype=np.float32
)


def expected(rows):
    """What tests/models/v2-iris answers: the features' sum and whether it passes 12."""
    sums = [float(sum(float(np.float32(x)) for x in r)) for r in rows]
    return [int(s > 12.0) for s in sums], sums


def triton_http():
    import tritonclient.http as http

    c = http.InferenceServerClient(url=HOST)
    assert c.is_server_live(headers=auth())
    assert c.is_server_ready(headers=auth())
    assert c.is_model_ready(MODEL, headers=auth())
    meta = c.get_server_metadata(headers=auth())
    assert meta["name"] == "model-runtime", meta
    assert "binary_tensor_data" in meta["extensions"], meta
    m = c.get_model_metadata(MODEL, headers=auth())
    assert m["name"] == MODEL, m
    # From the model's Avro schemas: an array field is a dimension more.
    assert [(i["name"], i["datatype"], i["shape"]) for i in m["inputs"]] == [
        ("features", "FP64", [-1, -1]),
        ("tag", "BYTES", [-1]),
    ], m
    assert {o["name"]: o["datatype"] for o in m["outputs"]} == {
        "label": "INT64",
        "score": "FP64",
        "tag": "BYTES",
    }, m
    labels, sums = expected(FEATURES)
    for binary_in in (False, True):
        for binary_out in (False, True):
            inp = http.InferInput("features", list(FEATURES.shape), "FP32")
            inp.set_data_from_numpy(FEATURES, binary_data=binary_in)
            outs = [
                http.InferRequestedOutput("label", binary_data=binary_out),
                http.InferRequestedOutput("score", binary_data=binary_out),
            ]
            r = c.infer(MODEL, [inp], outputs=outs, headers=auth(), request_id="r-7")
            assert r.get_response()["id"] == "r-7", r.get_response()
            assert r.as_numpy("label").tolist() == labels, (binary_in, binary_out, r.get_response())
            got = r.as_numpy("score").tolist()
            assert all(abs(a - b) < 1e-4 for a, b in zip(got, sums)), (got, sums)
    # BYTES in, both ways.
    names = np.array([b"setosa", b"virginica"], dtype=np.object_)
    inp = http.InferInput("features", [2, 4], "FP32")
    inp.set_data_from_numpy(FEATURES[:2], binary_data=True)
    tag = http.InferInput("tag", [2], "BYTES")
    tag.set_data_from_numpy(names, binary_data=True)
    r = c.infer(MODEL, [inp, tag], headers=auth())
    assert r.as_numpy("tag").tolist() == [b"setosa", b"virginica"], r.get_response()
    print("tritonclient http: metadata, ready, infer JSON and binary both ways: ok")


def kserve_rest():
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def run():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            assert await client.is_server_live(URL, headers=auth())
            assert await client.is_server_ready(URL, headers=auth())
            assert await client.is_model_ready(URL, MODEL, headers=auth())
            inp = InferInput("features", list(FEATURES.shape), "FP32")
            inp.set_data_from_numpy(FEATURES, binary_data=False)
            req = InferRequest(model_name=MODEL, infer_inputs=[inp], request_id="k-1")
            res = await client.infer(URL, req, MODEL, headers=auth())
            labels, _ = expected(FEATURES)
            got = {o.name: o for o in res.outputs}
            assert got["label"].as_numpy().tolist() == labels, res
            for binary_in in (True,):
                inp = InferInput("features", list(FEATURES.shape), "FP32")
                inp.set_data_from_numpy(FEATURES, binary_data=binary_in)
                req = InferRequest(model_name=MODEL, infer_inputs=[inp])
                res = await client.infer(URL, req, MODEL, headers=auth())
                got = {o.name: o for o in res.outputs}
                assert got["label"].as_numpy().tolist() == labels, res
        finally:
            await client.close()

    asyncio.run(run())
    print("kserve InferenceRESTClient v2: live, ready, infer JSON and binary: ok")


def raw(method, path, body=None, headers=None):
    req = urllib.request.Request(URL + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def errors_and_health():
    # The probes are open and answer the bodies the spec shows.
    s, b = raw("GET", "/v2/health/live")
    assert (s, json.loads(b)) == (200, {"live": True}), (s, b)
    s, b = raw("GET", "/v2/health/ready")
    assert (s, json.loads(b)) == (200, {"ready": True}), (s, b)
    # Everything else needs the token.
    s, b = raw("GET", f"/v2/models/{MODEL}")
    assert s == 401, (s, b)
    cases = [
        ("POST", f"/v2/models/nope/infer", b"{}", 404, "not served here"),
        ("POST", f"/v2/models/{MODEL}/infer", b'{"inputs": []}', 400, "no inputs"),
        (
            "POST",
            f"/v2/models/{MODEL}/infer",
            json.dumps({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}).encode(),
            400,
            "holds 4 elements but 3 were given",
        ),
        (
            "POST",
            f"/v2/models/{MODEL}/infer",
            json.dumps({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                        "outputs": [{"name": "nothing"}]}).encode(),
            400,
            "output 'nothing' is not one the model gives",
        ),
        (
            "POST",
            f"/v2/models/{MODEL}/infer",
            json.dumps({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [-1, 0, 0, 0]}]}).encode(),
            422,
            "negative",
        ),
    ]
    for method, path, body, status, text in cases:
        s, b = raw(method, path, body, {**auth(), "Content-Type": "application/json"})
        doc = json.loads(b)
        assert s == status and text in doc["error"], (path, s, doc)
    print("errors as {\"error\": ...} with their statuses; probes open: ok")


if __name__ == "__main__":
    errors_and_health()
    triton_http()
    kserve_rest()
