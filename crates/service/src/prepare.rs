//! From a document's model to a model ready to start: files materialized, entry points
//! resolved.

use std::path::Path;

use jobs::{LocatedModel, Materialized};
use runtime_core::{JobLog, LogSource, ModelSpec};

use crate::document::{Content, ModelSource};
use crate::error::{Error, Result};

pub struct Prepared {
    pub materialized: Materialized,
    pub spec: ModelSpec,
    /// What the source's smart comments say (schemas per slot among them).
    pub comments: runtime_core::SmartComments,
}

/// Writes the model into `dir` (emptied first) and resolves its entry points. Blocking:
/// call it on the blocking pool.
pub fn prepare_model(m: &ModelSource, dir: &Path, log: &dyn JobLog) -> Result<Prepared> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot empty {}", dir.display()), e))?;
    }
    let located = LocatedModel::from_parts(&m.source_name, m.source_text.clone(), m.language)?;
    let (mut comments, entry_points) = located.conventions(&m.explicit);
    // Schemas the document's modelMetaData carries serve slots the source names none for.
    for (slot, text) in &m.schemas {
        comments
            .schemas
            .entry(runtime_core::Slot(*slot))
            .or_insert_with(|| text.clone());
    }
    for (line, problem) in &comments.problems {
        log.warn(
            LogSource::Engine,
            format!("{} line {line}: {problem}", m.source_name),
        );
    }
    let materialized = jobs::materialize(&located, dir)?;
    for (rel, content) in &m.assets {
        match content {
            Content::Bytes(b) => jobs::model_files::write_asset(&materialized, rel, b)?,
            Content::File(p) => jobs::model_files::copy_asset(&materialized, rel, p)?,
        }
    }
    log.info(
        LogSource::Engine,
        format!(
            "assets written: {} file(s) in {}",
            m.assets.len() + 1,
            materialized.work_dir.display()
        ),
    );
    let spec = ModelSpec {
        language: located.language,
        work_dir: materialized.work_dir.clone(),
        main_source: materialized.main_source.clone(),
        entry_points,
        recordsets: comments.recordsets.clone(),
        import_paths: Vec::new(),
    };
    Ok(Prepared {
        materialized,
        spec,
        comments,
    })
}
