//! A Python model's own environment: its requirements (`requirements.txt` and the other
//! requirements assets at the top of its working directory) installed into a cached venv
//! by the `environments` crate, whose site-packages then come first on the model's import
//! path. The Python runner's [`Runner::prepare`](runtime_core::Runner::prepare) step, the
//! same for batch jobs and deployments.

use std::path::Path;
use std::sync::Arc;

use runtime_core::{Error, JobLog, LogSource, ModelSpec, PrepareOptions, Prepared, Result};

fn failed(reason: String) -> Error {
    Error::Prepare {
        reason,
        source: None,
    }
}

/// Installs `model`'s requirements into `environments` (relaxed when asked) and returns the
/// spec with the environment first on its import path, holding the environment.
pub(crate) async fn prepare(
    model: &ModelSpec,
    environments: Option<Arc<environments::EnvironmentCache>>,
    options: &PrepareOptions,
    log: &Arc<dyn JobLog>,
) -> Result<Prepared> {
    let found = {
        let work_dir = model.work_dir.clone();
        let assets = options.requirements_assets.clone();
        tokio::task::spawn_blocking(move || read_requirements(&work_dir, &assets))
            .await
            .map_err(|e| failed(format!("reading the model's requirements failed: {e}")))??
    };
    let mut files = Vec::new();
    for (name, mut content) in found {
        if options.relax_requirements {
            let (relaxed, names) = environments::relax_requirements(&content);
            if !names.is_empty() {
                log.warn(
                    LogSource::Engine,
                    format!(
                        "{name}: installing without version pins, as asked: {}",
                        names.join(", ")
                    ),
                );
            }
            content = relaxed;
        }
        files.push(environments::RequirementsFile { name, content });
    }
    let mut model = model.clone();
    if files.is_empty() {
        return Ok(Prepared { model, guard: None });
    }
    let Some(cache) = environments else {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        return Err(failed(format!(
            "the model has requirements ({}) but this engine has no environment cache to install them into",
            names.join(", ")
        )));
    };
    let job_log = log.clone();
    let prepared = tokio::task::spawn_blocking(move || cache.prepare(&files, &*job_log))
        .await
        .map_err(|e| failed(format!("installing the model's requirements failed: {e}")))?
        .map_err(|e| Error::Prepare {
            reason: format!("installing the model's requirements failed: {e}"),
            source: Some(Box::new(e)),
        })?;
    let Some(prepared) = prepared else {
        return Ok(Prepared { model, guard: None });
    };
    model.import_paths.insert(0, prepared.site_packages.clone());
    Ok(Prepared {
        model,
        guard: Some(Box::new(prepared)),
    })
}

/// The requirements files at the top of `work_dir` (`requirements.txt`, then `assets`), each
/// once, with their text. Blocking.
fn read_requirements(work_dir: &Path, assets: &[String]) -> Result<Vec<(String, String)>> {
    let mut found: Vec<(String, String)> = Vec::new();
    let names = std::iter::once("requirements.txt").chain(assets.iter().map(String::as_str));
    for name in names {
        let path = work_dir.join(name);
        if found.iter().any(|(n, _)| n == name) || !path.is_file() {
            continue;
        }
        let content = std::fs::read_to_string(&path)
            .map_err(|e| failed(format!("cannot read the model's requirements {name}: {e}")))?;
        found.push((name.to_owned(), content));
    }
    Ok(found)
}
