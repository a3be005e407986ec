//! The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`, as
//! KServe's and Triton's clients call it), over a [`Backend`] that knows the model. The
//! messages are turned into `inference_protocol`'s requests and responses, so a host serves
//! gRPC and REST from one implementation. Requests may carry their tensors typed
//! (`contents`) or raw (`raw_input_contents`, Triton's default); answers carry theirs raw.
//!
//! [`service`] gives a tonic service; the host serves it (`tonic::service::Routes` makes
//! it an axum router) and puts its own authentication in front.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use inference_protocol::{
    Datatype, InferRequest, InferResponse, RequestedOutput, Tensor, TensorMetadata,
};
use runtime_core::Value;
use tonic::{Request, Response, Status};

/// The generated messages and server.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};

/// Why a call failed, with the HTTP status the REST form answers (mapped to a gRPC code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub http_status: u16,
    pub message: String,
}

impl Failure {
    pub fn new(http_status: u16, message: impl Into<String>) -> Failure {
        Failure {
            http_status,
            message: message.into(),
        }
    }

    fn status(self) -> Status {
        let code = match self.http_status {
            400 | 413 | 422 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            403 => tonic::Code::PermissionDenied,
            404 => tonic::Code::NotFound,
            409 => tonic::Code::FailedPrecondition,
            503 => tonic::Code::Unavailable,
            504 => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Internal,
        };
        Status::new(code, self.message)
    }
}

/// The model side of the protocol, which the host implements.
#[tonic::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Whether the server's model takes requests now.
    fn ready(&self) -> bool;
    /// The server's name, version and protocol extensions.
    fn server_metadata(&self) -> (String, String, Vec<String>);
    /// Model `name`'s readiness; a failure when it is not served.
    fn model_ready(&self, name: &str) -> Result<bool, Failure>;
    /// Model `name`'s platform, inputs and outputs.
    fn model_metadata(
        &self,
        name: &str,
    ) -> Result<(String, Vec<TensorMetadata>, Vec<TensorMetadata>), Failure>;
    /// Scores a request with model `name` (`version` echoed when given).
    async fn infer(
        &self,
        name: &str,
        version: Option<String>,
        request: InferRequest,
    ) -> Result<InferResponse, Failure>;
}

/// The tonic service over `backend`.
pub fn service<B: Backend>(backend: Arc<B>) -> GrpcInferenceServiceServer<Server<B>> {
    GrpcInferenceServiceServer::new(Server { backend })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// The service's implementation; see [`service`].
pub struct Server<B> {
    backend: Arc<B>,
}

fn tensors(meta: Vec<TensorMetadata>) -> Vec<pb::model_metadata_response::TensorMetadata> {
    meta.into_iter()
        .map(|m| pb::model_metadata_response::TensorMetadata {
            name: m.name,
            datatype: m.datatype,
            shape: m.shape,
        })
        .collect()
}

fn bool_parameter(
    p: &std::collections::HashMap<String, pb::InferParameter>,
    key: &str,
) -> Option<bool> {
    match p.get(key)?.parameter_choice {
        Some(pb::infer_parameter::ParameterChoice::BoolParam(b)) => Some(b),
        _ => None,
    }
}

/// A gRPC request as the protocol's request: each input from its raw bytes when the
/// request sends them, else from its typed contents.
pub fn request_of(r: pb::ModelInferRequest) -> Result<InferRequest, Failure> {
    let raw = r.raw_input_contents;
    if !raw.is_empty() && raw.len() != r.inputs.len() {
        return Err(Failure::new(
            400,
            format!(
                "raw_input_contents holds {} tensors for {} inputs",
                raw.len(),
                r.inputs.len()
            ),
        ));
    }
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for (i, input) in r.inputs.into_iter().enumerate() {
        let datatype = Datatype::parse(&input.datatype).ok_or_else(|| {
            Failure::new(
                400,
                format!(
                    "input '{}': unknown datatype '{}'",
                    input.name, input.datatype
                ),
            )
        })?;
        let data = match raw.get(i) {
            Some(bytes) => inference_protocol::decode_binary(&input.name, datatype, bytes)
                .map_err(|e| Failure::new(400, e.0))?,
            None => contents(datatype, input.contents.unwrap_or_default()),
        };
        inputs.push(
            Tensor::input(input.name, datatype, &input.shape, data)
                .map_err(|e| Failure::new(400, e.0))?,
        );
    }
    let mut parameters = inference_protocol_parameters(&r.parameters);
    if let Some(b) = bool_parameter(&r.parameters, "binary_data_output") {
        parameters.insert("binary_data_output".into(), b.into());
    }
    Ok(InferRequest {
        id: (!r.id.is_empty()).then_some(r.id),
        parameters,
        inputs,
        outputs: r
            .outputs
            .into_iter()
            .map(|o| RequestedOutput {
                binary: Some(true),
                name: o.name,
            })
            .collect(),
    })
}

fn inference_protocol_parameters(
    p: &std::collections::HashMap<String, pb::InferParameter>,
) -> inference_protocol::Parameters {
    use pb::infer_parameter::ParameterChoice as C;
    p.iter()
        .filter_map(|(k, v)| {
            let v: inference_protocol::Json = match v.parameter_choice.as_ref()? {
                C::BoolParam(b) => (*b).into(),
                C::Int64Param(i) => (*i).into(),
                C::StringParam(s) => s.clone().into(),
                C::DoubleParam(d) => (*d).into(),
                C::Uint64Param(u) => (*u).into(),
            };
            Some((k.clone(), v))
        })
        .collect()
}

/// Typed contents as elements of `datatype`.
fn contents(datatype: Datatype, c: pb::InferTensorContents) -> Vec<Value> {
    match datatype {
        Datatype::Bool => c.bool_contents.into_iter().map(Value::Bool).collect(),
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => c
            .int_contents
            .into_iter()
            .map(|i| Value::Int(i.into()))
            .collect(),
        Datatype::Int64 => c
            .int64_contents
            .into_iter()
            .map(|i| Value::Int(i.into()))
            .collect(),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => c
            .uint_contents
            .into_iter()
            .map(|i| Value::Int(i.into()))
            .collect(),
        Datatype::Uint64 => c
            .uint64_contents
            .into_iter()
            .map(|i| Value::Int(i.into()))
            .collect(),
        Datatype::Fp16 | Datatype::Fp32 => c
            .fp32_contents
            .into_iter()
            .map(|x| Value::Float(x.into()))
            .collect(),
        Datatype::Fp64 => c.fp64_contents.into_iter().map(Value::Float).collect(),
        Datatype::Bytes => c
            .bytes_contents
            .into_iter()
            .map(|b| match String::from_utf8(b) {
                Ok(s) => Value::from(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            })
            .collect(),
    }
}

/// The protocol's response as a gRPC response, every output raw.
pub fn response_of(r: InferResponse) -> pb::ModelInferResponse {
    let raw = r
        .outputs
        .iter()
        .map(inference_protocol::encode_binary)
        .collect();
    pb::ModelInferResponse {
        model_name: r.model_name,
        model_version: r.model_version.unwrap_or_default(),
        id: r.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs: r
            .outputs
            .into_iter()
            .map(|t| pb::model_infer_response::InferOutputTensor {
                name: t.name,
                datatype: t.datatype.as_str().to_owned(),
                shape: t.shape.iter().map(|d| *d as i64).collect(),
                parameters: Default::default(),
                contents: None,
            })
            .collect(),
        raw_output_contents: raw,
    }
}

#[tonic::async_trait]
impl<B: Backend> GrpcInferenceService for Server<B> {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.backend.ready(),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let ready = self
            .backend
            .model_ready(&r.into_inner().name)
            .map_err(Failure::status)?;
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        let (name, version, extensions) = self.backend.server_metadata();
        Ok(Response::new(pb::ServerMetadataResponse {
            name,
            version,
            extensions,
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let name = r.into_inner().name;
        let (platform, inputs, outputs) = self
            .backend
            .model_metadata(&name)
            .map_err(Failure::status)?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name,
            versions: Vec::new(),
            platform,
            inputs: tensors(inputs),
            outputs: tensors(outputs),
        }))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let r = r.into_inner();
        let name = r.model_name.clone();
        let version = (!r.model_version.is_empty()).then(|| r.model_version.clone());
        let request = request_of(r).map_err(Failure::status)?;
        let response = self
            .backend
            .infer(&name, version, request)
            .await
            .map_err(Failure::status)?;
        Ok(Response::new(response_of(response)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_inputs_read_the_same() {
        let typed = pb::ModelInferRequest {
            model_name: "m".into(),
            id: "1".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![2, 2],
                contents: Some(pb::InferTensorContents {
                    fp32_contents: vec![1.5, 2.0, 3.0, 4.0],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut raw = typed.clone();
        raw.inputs[0].contents = None;
        raw.raw_input_contents = vec![[1.5f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()];
        let a = request_of(typed).unwrap();
        let b = request_of(raw).unwrap();
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(a.id.as_deref(), Some("1"));
        assert_eq!(a.records().unwrap().len(), 2);
        let mut short = b.clone();
        short.inputs.clear();
        let bad = pb::ModelInferRequest {
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![3],
                contents: Some(pb::InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = request_of(bad).unwrap_err();
        assert_eq!(e.http_status, 400);
        assert!(e.message.contains("holds 3 elements but 1"), "{e:?}");
    }

    #[test]
    fn responses_carry_their_tensors_raw() {
        let r = response_of(InferResponse {
            model_name: "m".into(),
            model_version: None,
            id: Some("9".into()),
            outputs: vec![Tensor {
                name: "y".into(),
                datatype: Datatype::Int64,
                shape: vec![2],
                data: vec![Value::Int(3), Value::Int(-1)],
            }],
        });
        assert_eq!(r.outputs[0].shape, vec![2]);
        assert_eq!(r.raw_output_contents[0].len(), 16);
        assert_eq!(&r.raw_output_contents[0][8..], &(-1i64).to_le_bytes());
        assert_eq!(
            Failure::new(504, "late").status().code(),
            tonic::Code::DeadlineExceeded
        );
    }
}
