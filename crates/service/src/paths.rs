//! Local paths named by documents and uploads may lie only under configured roots
//! (`allowedPaths`, by default the data folder): a team can expose the engine without
//! exposing the machine's files. `engine run`, the local CLI, is not restricted.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What the engine keeps in its data folder: no job may write over these (a job output
/// named `engine.db` would truncate the queue's database).
pub const ENGINE_OWN_ENTRIES: &[&str] = &[
    "engine.db",
    "engine.db-wal",
    "engine.db-shm",
    "engine.db-journal",
    crate::datadir::LOCK_FILE,
    "jobs",
    "uploads",
    "deployments",
    "environments",
];

/// The folders local paths must lie under.
#[derive(Clone, Debug)]
pub struct PathPolicy {
    roots: Vec<PathBuf>,
    /// The data folder, whose own files and folders outputs may not name.
    data_dir: Option<PathBuf>,
}

impl PathPolicy {
    pub fn new(roots: Vec<PathBuf>) -> PathPolicy {
        PathPolicy {
            roots,
            data_dir: None,
        }
    }

    /// The same policy, refusing outputs that name the data folder itself or what the
    /// engine keeps in it ([`ENGINE_OWN_ENTRIES`]).
    pub fn protecting(mut self, data_dir: PathBuf) -> PathPolicy {
        self.data_dir = Some(data_dir);
        self
    }

    /// Refuses (403) a path a job would write (an output file, a training output folder):
    /// outside every root, or the data folder itself or one of the engine's own entries in
    /// it (its database, lock and job, upload, deployment and environment folders), or under one.
    pub fn check_output(&self, path: &Path, what: &str) -> Result<()> {
        self.check(path, what)?;
        let (Some(data_dir), Some(resolved)) = (&self.data_dir, resolve(path)) else {
            return Ok(());
        };
        let Ok(data_dir) = std::fs::canonicalize(data_dir) else {
            return Ok(());
        };
        let own = resolved == data_dir
            || ENGINE_OWN_ENTRIES
                .iter()
                .any(|entry| resolved.starts_with(data_dir.join(entry)));
        if own {
            return Err(Error::Forbidden(format!(
                "{what}: the path '{}' is the engine's own (the data folder {} keeps its database, lock and the folders {}); name a file or folder of your own",
                path.display(),
                data_dir.display(),
                "jobs/, uploads/, deployments/, environments/"
            )));
        }
        Ok(())
    }

    /// Refuses (403) a path outside every root. Links are followed first (the path, or for
    /// one that does not exist yet its nearest existing parent, is canonicalized), so
    /// neither `..` nor a symbolic link leads out.
    pub fn check(&self, path: &Path, what: &str) -> Result<()> {
        let resolved = resolve(path);
        let inside = resolved.as_ref().is_some_and(|r| {
            self.roots
                .iter()
                .filter_map(|root| std::fs::canonicalize(root).ok())
                .any(|root| r.starts_with(root))
        });
        if inside {
            return Ok(());
        }
        let roots = self
            .roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::Forbidden(format!(
            "{what}: the path '{}' is outside the allowed paths ({roots}); the setting 'allowedPaths' lists the folders documents may name",
            path.display()
        )))
    }
}

/// Checks every `file:` path a job document names: model assets, inputs, outputs (the
/// training output folder among them). Objects in stores (`s3://`...) are reached with
/// the engine's credentials, not through the file system: no path policy applies.
pub fn check_job(policy: &PathPolicy, doc: &crate::document::JobDocument) -> Result<()> {
    let mut named = model_paths(doc.model.as_ref(), "model");
    for (i, a) in doc.input_data.iter().enumerate() {
        named.push((format!("inputData[{i}].fileUrl"), a.file_url.clone()));
    }
    check_all(policy, named)?;
    for (i, a) in doc.output_data.iter().enumerate() {
        let what = format!("outputData[{i}].fileUrl");
        if let Some(path) = a
            .file_url
            .as_deref()
            .map(|url| crate::document::local_path(url, &what))
            .transpose()?
            .flatten()
        {
            policy.check_output(&path, &what)?;
        }
    }
    Ok(())
}

/// Checks every `file:` path a deployment document names.
pub fn check_deployment(
    policy: &PathPolicy,
    doc: &crate::document::DeploymentDocument,
) -> Result<()> {
    let named = model_paths(
        doc.deployable_model.as_ref().or(doc.model.as_ref()),
        "deployableModel",
    );
    check_all(policy, named)
}

/// Checks the local path a stream descriptor attached to `slot` names: a `file` input
/// (a file or a folder) is read only under the roots, a `file` output is written only
/// there and never over the engine's own files. The path must be absolute: a deployed
/// model has no working folder of the caller's.
pub fn check_stream(
    policy: &PathPolicy,
    descriptor: &endpoints::StreamDescriptor,
    slot: runtime_core::Slot,
) -> Result<()> {
    let endpoints::descriptor::Transport::File { path } = &descriptor.transport else {
        return Ok(());
    };
    let what = "Transport.Path";
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(Error::BadRequest(format!(
            "invalid stream descriptor: field '{what}': '{}' is not an absolute path; a stream of the engine names a path on the engine's machine from its root",
            path.display()
        )));
    }
    if slot.is_input() {
        policy.check(path, what)
    } else {
        policy.check_output(path, what)
    }
}

fn model_paths(m: Option<&crate::document::ModelRef>, what: &str) -> Vec<(String, Option<String>)> {
    m.and_then(|m| m.stored_model.as_ref())
        .map(|s| {
            s.model_assets
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    (
                        format!("{what}.storedModel.modelAssets[{i}].fileUrl"),
                        a.file_url.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn check_all(policy: &PathPolicy, named: Vec<(String, Option<String>)>) -> Result<()> {
    for (what, url) in named {
        let Some(url) = url else { continue };
        // Objects in stores are not paths; unknown schemes are refused when the document
        // is read.
        if let Ok(Some(path)) = crate::document::local_path(&url, &what) {
            policy.check(&path, &what)?;
        }
    }
    Ok(())
}

/// The path with links and `..` resolved: canonical when it exists, else its nearest
/// existing parent canonical and the rest appended (`None` if the rest holds `..`:
/// `file_name` is `None` for it).
fn resolve(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(mut c) => {
                for part in rest.iter().rev() {
                    c.push(part);
                }
                return Some(c);
            }
            Err(_) => {
                let name = existing.file_name()?.to_owned();
                rest.push(name);
                existing = existing.parent()?.to_path_buf();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_roots_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let p = PathPolicy::new(vec![root.path().to_path_buf()]);
        std::fs::write(root.path().join("in.json"), "1").unwrap();
        p.check(&root.path().join("in.json"), "x").unwrap();
        p.check(&root.path().join("new/sub/out.json"), "x").unwrap();
        let e = p.check(Path::new("/etc/hostname"), "inputData[0].fileUrl");
        let msg = e.unwrap_err().to_string();
        assert!(
            msg.contains("allowedPaths") && msg.contains("/etc/hostname"),
            "{msg}"
        );
        let up = root
            .path()
            .join("..")
            .join(other.path().file_name().unwrap());
        assert!(p.check(&up.join("x"), "x").is_err());
        assert!(p.check(&root.path().join("new/../../x"), "x").is_err());
        std::os::unix::fs::symlink(other.path(), root.path().join("link")).unwrap();
        assert!(p.check(&root.path().join("link/x.json"), "x").is_err());
        assert!(p.check(&root.path().join("link/new/x.json"), "x").is_err());
    }

    #[test]
    fn streams_name_absolute_paths_under_the_roots() {
        let data = tempfile::tempdir().unwrap();
        let p =
            PathPolicy::new(vec![data.path().to_path_buf()]).protecting(data.path().to_path_buf());
        let file =
            |path: &str| endpoints::StreamDescriptor::parse(&format!("file:{path}")).unwrap();
        let inside = data.path().join("in.jsonl").display().to_string();
        check_stream(&p, &file(&inside), runtime_core::Slot(0)).unwrap();
        check_stream(&p, &file(&inside), runtime_core::Slot(1)).unwrap();
        let e = check_stream(&p, &file("/etc/hostname"), runtime_core::Slot(0)).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::FORBIDDEN, "{e}");
        let e = check_stream(&p, &file("in.jsonl"), runtime_core::Slot(0)).unwrap_err();
        assert!(e.to_string().contains("'Transport.Path'"), "{e}");
        let db = data.path().join("engine.db").display().to_string();
        assert!(check_stream(&p, &file(&db), runtime_core::Slot(1)).is_err());
        let rest = endpoints::StreamDescriptor::parse("rest:").unwrap();
        check_stream(&p, &rest, runtime_core::Slot(0)).unwrap();
    }

    #[test]
    fn outputs_may_not_name_the_engines_own_files() {
        let data = tempfile::tempdir().unwrap();
        let p =
            PathPolicy::new(vec![data.path().to_path_buf()]).protecting(data.path().to_path_buf());
        std::fs::write(data.path().join("engine.db"), "").unwrap();
        std::fs::create_dir(data.path().join("jobs")).unwrap();
        for own in [
            "engine.db",
            "engine.lock",
            "jobs/x/content/in.json",
            "environments/e",
        ] {
            let e = p.check_output(&data.path().join(own), "outputData[0].fileUrl");
            let msg = e.unwrap_err().to_string();
            assert!(msg.contains("the engine's own"), "{own}: {msg}");
        }
        assert!(p.check_output(data.path(), "x").is_err());
        assert!(p
            .check_output(&data.path().join("x/../engine.db"), "x")
            .is_err());
        p.check_output(&data.path().join("out.jsonl"), "x").unwrap();
        p.check_output(&data.path().join("scored/jobs.jsonl"), "x")
            .unwrap();
        // Reading is not writing: a stored job's inputs stay readable.
        p.check(&data.path().join("jobs/x/content/in.json"), "x")
            .unwrap();
    }
}
