//! The Open Inference Protocol's gRPC form (`inference_grpc`), on its own port
//! (`grpcPort`): the same model, the same chain and the same answers as the REST routes of
//! `v2.rs`, whose functions it calls.

use std::sync::Arc;

use inference_grpc::{Backend, Failure};
use inference_protocol::{InferRequest, InferResponse, TensorMetadata};

use crate::Engine;

use super::v2;

/// The engine as the gRPC service's backend.
pub(super) struct GrpcBackend(pub(super) Arc<Engine>);

fn metadata(views: Vec<v2::TensorMetadataView>) -> Vec<TensorMetadata> {
    views
        .into_iter()
        .map(|v| TensorMetadata {
            name: v.name,
            datatype: v.datatype,
            shape: v.shape,
        })
        .collect()
}

#[tonic::async_trait]
impl Backend for GrpcBackend {
    fn ready(&self) -> bool {
        v2::is_ready(&self.0).is_some()
    }

    fn server_metadata(&self) -> (String, String, Vec<String>) {
        let m = v2::server_metadata_of(&self.0);
        (m.name, m.version, m.extensions)
    }

    fn model_ready(&self, name: &str) -> Result<bool, Failure> {
        v2::model(&self.0, name).map_err(|why| Failure::new(404, why))?;
        Ok(self.ready())
    }

    fn model_metadata(
        &self,
        name: &str,
    ) -> Result<(String, Vec<TensorMetadata>, Vec<TensorMetadata>), Failure> {
        let d = v2::model(&self.0, name).map_err(|why| Failure::new(404, why))?;
        Ok((
            d.model.language.as_str().to_owned(),
            metadata(v2::tensors(&d, v2::INPUT, "input-0")),
            metadata(v2::tensors(&d, v2::OUTPUT, "output-0")),
        ))
    }

    async fn infer(
        &self,
        name: &str,
        version: Option<String>,
        request: InferRequest,
    ) -> Result<InferResponse, Failure> {
        v2::infer_request(&self.0, name, version, request)
            .await
            .map_err(|(status, why)| Failure::new(status.as_u16(), why))
    }
}
