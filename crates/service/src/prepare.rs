//! From a document's model to a model ready to start: its `jobs::PlanModel` (the one batch
//! jobs plan with), files materialized, entry points resolved.

use std::path::Path;

use jobs::{Asset, LocatedModel, Materialized, PlanModel};
use runtime_core::{JobLog, ModelSpec};

use crate::document::{Content, ModelSource};
use crate::error::{Error, Result};

pub struct Prepared {
    pub materialized: Materialized,
    pub spec: ModelSpec,
    /// What the source's smart comments say (schemas per slot among them).
    pub comments: runtime_core::SmartComments,
}

/// A document's model as a plan's: its source parsed once, the schemas of its
/// `modelMetaData` serving slots the source names none for, its assets.
pub fn plan_model(m: &ModelSource) -> Result<PlanModel> {
    let located = LocatedModel::from_parts(&m.source_name, m.source_text.clone(), m.language)?;
    let mut model = PlanModel::new(located, &m.explicit).with_slot_schemas(&m.schemas);
    model.assets = m
        .assets
        .iter()
        .map(|(rel, content)| {
            let asset = match content {
                Content::Bytes(b) => Asset::Bytes(b.clone()),
                Content::File(p) => Asset::File(p.clone()),
                Content::Remote(d) => Asset::Remote(d.clone()),
            };
            (rel.clone(), asset)
        })
        .collect();
    Ok(model)
}

/// Writes the model into `dir` (emptied first), its files in stores fetched through
/// `registry`, and resolves its entry points. Blocking: call it on the blocking pool.
pub fn prepare_model(
    m: &ModelSource,
    dir: &Path,
    log: &dyn JobLog,
    registry: &endpoints::Registry,
) -> Result<Prepared> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot empty {}", dir.display()), e))?;
    }
    let model = plan_model(m)?;
    let (materialized, spec) = model.write(dir, log, registry)?;
    Ok(Prepared {
        materialized,
        spec,
        comments: model.comments,
    })
}
