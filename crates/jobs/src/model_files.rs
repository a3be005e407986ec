//! From a model on disk (a source file, or a folder of source and assets) to a model ready
//! to start: its files materialized in a fresh working directory, its entry points resolved.
//!
//! Invariants:
//! - The main source is written under a reserved name (`__model.py`, `__model.R`) and NOT
//!   under its own name, so a model called `inspect.py` cannot shadow the standard library.
//! - Every other file keeps its relative path; zip, tar and tar.gz assets are extracted
//!   beside themselves (the archive stays too).
//! - Nothing is written outside the model's folder: asset and archive entry names are
//!   relative, without `..`, NUL or over-long components ([`check_asset_name`]); archives may
//!   not hold symbolic or hard links; no file is written through a symbolic link, and an
//!   existing file is replaced, never written into (it could be a hard link).
//! - `outputDir/` exists before the model starts; HOME is a writable folder of the job's.

use std::fs;
use std::path::{Component, Path, PathBuf};

use runtime_core::{EntryPoints, ExplicitNames, Language, SmartComments};

use crate::error::{Error, Result};

/// The reserved file name of the main source in the working directory.
pub fn reserved_source_name(language: Language) -> &'static str {
    match language {
        Language::Python => "__model.py",
        Language::R => "__model.R",
    }
}

/// The folder, under the working directory, that training writes its products to.
pub const OUTPUT_DIR: &str = "outputDir";

/// A model found on disk.
#[derive(Clone, Debug)]
pub struct LocatedModel {
    /// The language of the main source, from its extension.
    pub language: Language,
    /// The main source's own file name (for logs).
    pub source_name: String,
    /// The main source's text.
    pub source_text: String,
    /// Every other file: (path relative to the model's folder, path on disk).
    pub assets: Vec<(PathBuf, PathBuf)>,
}

impl LocatedModel {
    /// A model from a source file or a folder. In a folder the main source is the one named
    /// by `source`, else the only `.py`/`.R` file at the top, else the only one carrying
    /// `modelop.` markers.
    pub fn from_path(path: &Path, source: Option<&str>) -> Result<LocatedModel> {
        let meta = fs::metadata(path)
            .map_err(|e| Error::io(format!("cannot read model {}", path.display()), e))?;
        if meta.is_file() {
            let name = file_name(path);
            let language = Language::from_path(&name).ok_or_else(|| {
                Error::Model(format!(
                    "{}: the model's source must end in .py, .py3, .R or .r",
                    path.display()
                ))
            })?;
            let source_text = read_source(path)?;
            return Ok(LocatedModel {
                language,
                source_name: name,
                source_text,
                assets: Vec::new(),
            });
        }
        let mut files = Vec::new();
        collect_files(path, Path::new(""), &mut files)?;
        files.sort();
        let main_rel = match source {
            Some(s) => {
                let rel = PathBuf::from(s);
                if !files.iter().any(|(r, _)| *r == rel) {
                    return Err(Error::Model(format!(
                        "--source {s}: no such file in {}",
                        path.display()
                    )));
                }
                rel
            }
            None => pick_main_source(path, &files)?,
        };
        let name = main_rel.to_string_lossy().into_owned();
        let language = Language::from_path(&name).ok_or_else(|| {
            Error::Model(format!(
                "{name}: the model's source must end in .py, .py3, .R or .r"
            ))
        })?;
        let source_text = read_source(&path.join(&main_rel))?;
        let assets = files
            .into_iter()
            .filter(|(rel, _)| *rel != main_rel)
            .collect();
        Ok(LocatedModel {
            language,
            source_name: name,
            source_text,
            assets,
        })
    }

    /// An embedded model (a job document's source and assets).
    pub fn from_parts(
        source_name: &str,
        source_text: String,
        language: Option<Language>,
    ) -> Result<LocatedModel> {
        let language = language
            .or_else(|| Language::from_path(source_name))
            .ok_or_else(|| {
                Error::Model(format!("{source_name}: cannot tell the model's language"))
            })?;
        Ok(LocatedModel {
            language,
            source_name: source_name.to_owned(),
            source_text,
            assets: Vec::new(),
        })
    }

    /// Parses the smart comments and resolves the entry points.
    pub fn conventions(&self, explicit: &ExplicitNames) -> (SmartComments, EntryPoints) {
        let comments = SmartComments::parse(&self.source_text, self.language);
        let defined = runtime_core::model::top_level_definitions(&self.source_text, self.language);
        let entry = comments.entry_points(explicit, |n| defined.iter().any(|d| d == n));
        (comments, entry)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_source(path: &Path) -> Result<String> {
    let bytes =
        fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::Model(format!(
            "{}: the source is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

fn collect_files(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<()> {
    let dir = root.join(rel);
    let entries =
        fs::read_dir(&dir).map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let name = entry.file_name();
        // Caches and VCS folders are not the model's assets.
        if name == "__pycache__" || name == ".git" {
            continue;
        }
        let child_rel = rel.join(&name);
        let ty = entry
            .file_type()
            .map_err(|e| Error::io(format!("cannot stat {}", entry.path().display()), e))?;
        if ty.is_dir() {
            collect_files(root, &child_rel, out)?;
        } else {
            out.push((child_rel, entry.path()));
        }
    }
    Ok(())
}

fn pick_main_source(root: &Path, files: &[(PathBuf, PathBuf)]) -> Result<PathBuf> {
    let top: Vec<&PathBuf> = files
        .iter()
        .map(|(rel, _)| rel)
        .filter(|rel| rel.components().count() == 1)
        .filter(|rel| Language::from_path(&rel.to_string_lossy()).is_some())
        .collect();
    match top.as_slice() {
        [] => Err(Error::Model(format!(
            "{}: no .py or .R source at the top of the folder",
            root.display()
        ))),
        [one] => Ok((*one).clone()),
        many => {
            let marked: Vec<&PathBuf> = many
                .iter()
                .copied()
                .filter(|rel| {
                    fs::read_to_string(root.join(rel))
                        .map(|s| has_markers(&s))
                        .unwrap_or(false)
                })
                .collect();
            match marked.as_slice() {
                [one] => Ok((*one).clone()),
                _ => Err(Error::Model(format!(
                    "{}: several sources ({}) and {} of them carry modelop markers; name the main one with --source",
                    root.display(),
                    many.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                    if marked.is_empty() { "none".to_owned() } else { marked.len().to_string() }
                ))),
            }
        }
    }
}

fn has_markers(source: &str) -> bool {
    source.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with('#')
            && t.trim_start_matches('#')
                .trim_start()
                .starts_with("modelop.")
    })
}

/// A model's files written out for one run.
#[derive(Clone, Debug)]
pub struct Materialized {
    /// The model's folder, its working directory when it runs.
    pub work_dir: PathBuf,
    /// The main source, relative to `work_dir`.
    pub main_source: PathBuf,
    /// `work_dir/outputDir`.
    pub output_dir: PathBuf,
    /// A writable HOME for the model, outside its working directory.
    pub home: PathBuf,
    /// Files written, relative to `work_dir` (for the job log).
    pub files: Vec<PathBuf>,
}

/// Writes the model into `job_dir/model` (its working directory) and creates
/// `job_dir/home`. `job_dir` must be empty or absent.
pub fn materialize(model: &LocatedModel, job_dir: &Path) -> Result<Materialized> {
    let work_dir = job_dir.join("model");
    let home = job_dir.join("home");
    for d in [&work_dir, &home] {
        fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("cannot create {}", d.display()), e))?;
    }
    let main_source = PathBuf::from(reserved_source_name(model.language));
    write_file(&work_dir.join(&main_source), model.source_text.as_bytes())?;
    let mut files = vec![main_source.clone()];
    for (rel, src) in &model.assets {
        check_asset_name(&rel.to_string_lossy())?;
        let dest = prepare_dest(&work_dir, rel)?;
        fs::copy(src, &dest).map_err(|e| {
            Error::io(
                format!("cannot copy {} to {}", src.display(), dest.display()),
                e,
            )
        })?;
        files.push(rel.clone());
        extract_if_archive(&dest)?;
    }
    let output_dir = work_dir.join(OUTPUT_DIR);
    fs::create_dir_all(&output_dir)
        .map_err(|e| Error::io(format!("cannot create {}", output_dir.display()), e))?;
    Ok(Materialized {
        work_dir,
        main_source,
        output_dir,
        home,
        files,
    })
}

/// Writes an embedded asset (from a job document) into a materialized model.
pub fn write_asset(m: &Materialized, rel: &Path, content: &[u8]) -> Result<()> {
    check_asset_name(&rel.to_string_lossy())?;
    let dest = prepare_dest(&m.work_dir, rel)?;
    write_file(&dest, content)?;
    extract_if_archive(&dest)
}

/// Fetches a file into a materialized model as the asset `rel`: `fetch` is handed the
/// destination to write (an object in a store, copied by its endpoint's opener).
pub fn fetch_asset(
    m: &Materialized,
    rel: &Path,
    fetch: impl FnOnce(&Path) -> runtime_core::Result<u64>,
) -> Result<u64> {
    check_asset_name(&rel.to_string_lossy())?;
    let dest = prepare_dest(&m.work_dir, rel)?;
    let bytes = fetch(&dest)?;
    extract_if_archive(&dest)?;
    Ok(bytes)
}

/// Copies a file from disk into a materialized model as the asset `rel`.
pub fn copy_asset(m: &Materialized, rel: &Path, src: &Path) -> Result<()> {
    check_asset_name(&rel.to_string_lossy())?;
    let dest = prepare_dest(&m.work_dir, rel)?;
    fs::copy(src, &dest).map_err(|e| {
        Error::io(
            format!("cannot copy {} to {}", src.display(), dest.display()),
            e,
        )
    })?;
    extract_if_archive(&dest)
}

/// Longest file name component, in bytes.
pub const MAX_NAME_COMPONENT: usize = 255;
/// Longest asset name, in bytes.
pub const MAX_NAME_TOTAL: usize = 4096;

/// Checks that an asset's (or an archive entry's) name stays inside the model's folder:
/// relative, no `..`, no NUL, no component over 255 bytes, at most 4096 bytes in all.
/// Returns it as a relative path.
pub fn check_asset_name(name: &str) -> Result<PathBuf> {
    asset_name_problem(name)
        .map_err(|why| Error::Model(format!("asset '{}': {why}", name.escape_default())))
}

/// `check_asset_name`'s rules; the error is the bare reason, for callers naming the asset
/// their own way (an archive entry).
fn asset_name_problem(name: &str) -> std::result::Result<PathBuf, String> {
    let refuse = |why: &str| Err(why.to_owned());
    if name.trim().is_empty() {
        return refuse("the name is empty");
    }
    if name.contains('\0') {
        return refuse("the name contains a NUL byte");
    }
    if name.len() > MAX_NAME_TOTAL {
        return refuse(&format!(
            "the name is {} bytes long (at most {MAX_NAME_TOTAL})",
            name.len()
        ));
    }
    let path = Path::new(name);
    for c in path.components() {
        match c {
            Component::Normal(part) => {
                if part.len() > MAX_NAME_COMPONENT {
                    return refuse(&format!(
                        "a component of the name is {} bytes long (at most {MAX_NAME_COMPONENT})",
                        part.len()
                    ));
                }
            }
            Component::CurDir => {}
            Component::ParentDir => return refuse("'..' leaves the model's folder"),
            Component::RootDir | Component::Prefix(_) => {
                return refuse("an absolute name leaves the model's folder")
            }
        }
    }
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        return refuse("the name names no file");
    }
    Ok(rel)
}

/// Makes `root/rel` ready to be written: its folders exist and none of them (nor the file
/// itself) is a symbolic link, so nothing can be written outside `root`; an existing file
/// there is removed (it could be a hard link to a file elsewhere).
fn prepare_dest(root: &Path, rel: &Path) -> Result<PathBuf> {
    prepare(root, rel, false)
}

/// Creates the folders of `rel` under `root`, refusing to pass through links; an existing
/// folder is kept with what is in it.
fn make_dirs(root: &Path, rel: &Path) -> Result<()> {
    prepare(root, rel, true).map(drop)
}

/// `prepare_dest`, or with `folder` the last component made a folder too.
fn prepare(root: &Path, rel: &Path, folder: bool) -> Result<PathBuf> {
    let mut at = root.to_path_buf();
    let parts: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::Model(format!(
                    "asset '{}': '{}' is a symbolic link; nothing is written through links",
                    rel.display(),
                    at.strip_prefix(root).unwrap_or(&at).display()
                )));
            }
            Ok(meta) if last && folder => {
                if !meta.is_dir() {
                    return Err(Error::Model(format!(
                        "asset '{}': a file of that name exists",
                        rel.display()
                    )));
                }
            }
            Ok(meta) if last => {
                if meta.is_dir() {
                    return Err(Error::Model(format!(
                        "asset '{}': a folder of that name exists",
                        rel.display()
                    )));
                }
                fs::remove_file(&at)
                    .map_err(|e| Error::io(format!("cannot replace {}", at.display()), e))?;
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(Error::Model(format!(
                    "asset '{}': '{}' is a file, not a folder",
                    rel.display(),
                    at.strip_prefix(root).unwrap_or(&at).display()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !last || folder {
                    fs::create_dir(&at)
                        .map_err(|e| Error::io(format!("cannot create {}", at.display()), e))?;
                }
            }
            Err(e) => return Err(Error::io(format!("cannot stat {}", at.display()), e)),
        }
    }
    Ok(at)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

fn extract_if_archive(path: &Path) -> Result<()> {
    let name = file_name(path).to_ascii_lowercase();
    let dir = path.parent().unwrap_or(Path::new("."));
    let open = || {
        fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))
    };
    if name.ends_with(".zip") {
        extract_zip(path, open()?, dir)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        extract_tar(path, flate2::read::GzDecoder::new(open()?), dir)
    } else if name.ends_with(".tar") {
        extract_tar(path, open()?, dir)
    } else {
        Ok(())
    }
}

fn archive_refusal(archive: &Path, entry: &str, why: &str) -> Error {
    Error::Model(format!(
        "{}: entry '{}' {why}",
        file_name(archive),
        entry.escape_default()
    ))
}

/// An archive entry's name, checked like an asset's.
fn entry_name(archive: &Path, entry: &str) -> Result<PathBuf> {
    asset_name_problem(entry)
        .map_err(|why| archive_refusal(archive, entry, &format!("is refused: {why}")))
}

/// The archive's own folder (`./`, as `tar -C dir -czf m.tgz .` writes it): nothing to make.
fn is_top_folder(entry: &str) -> bool {
    Path::new(entry)
        .components()
        .all(|c| matches!(c, Component::CurDir))
}

/// Writes an archive entry's bytes to a new file at `dest`, keeping its permission bits
/// (an executable helper stays executable; set-id bits are dropped).
fn write_entry(
    archive: &Path,
    raw: &str,
    reader: &mut impl std::io::Read,
    dest: &Path,
    mode: Option<u32>,
) -> Result<()> {
    let mut out = fs::File::create_new(dest)
        .map_err(|e| Error::io(format!("cannot write {}", dest.display()), e))?;
    std::io::copy(reader, &mut out).map_err(|e| {
        Error::Model(format!(
            "{}: cannot extract '{raw}': {e}",
            archive.display()
        ))
    })?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        out.set_permissions(fs::Permissions::from_mode(mode & 0o777))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", dest.display()), e))?;
    }
    Ok(())
}

fn extract_zip(path: &Path, file: fs::File, dir: &Path) -> Result<()> {
    let unreadable = |e: zip::result::ZipError| {
        Error::Model(format!(
            "{}: not a readable zip archive: {e}",
            path.display()
        ))
    };
    let mut archive = zip::ZipArchive::new(file).map_err(unreadable)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(unreadable)?;
        let raw = entry.name().to_owned();
        if entry.is_dir() && is_top_folder(&raw) {
            continue;
        }
        let rel = entry_name(path, &raw)?;
        if entry.is_symlink() {
            return Err(archive_refusal(
                path,
                &raw,
                "is a symbolic link; links in archives are refused",
            ));
        }
        if entry.is_dir() {
            make_dirs(dir, &rel)?;
            continue;
        }
        let dest = prepare_dest(dir, &rel)?;
        let mode = entry.unix_mode();
        write_entry(path, &raw, &mut entry, &dest, mode)?;
    }
    Ok(())
}

fn extract_tar(path: &Path, reader: impl std::io::Read, dir: &Path) -> Result<()> {
    let unreadable = |e: std::io::Error| {
        Error::Model(format!(
            "{}: not a readable tar archive: {e}",
            path.display()
        ))
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let kind = entry.header().entry_type();
        // PAX headers describe the entries (`git archive` writes a global one): no file.
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if kind == tar::EntryType::Directory && is_top_folder(&raw) {
            continue;
        }
        let rel = entry_name(path, &raw)?;
        match kind {
            tar::EntryType::Directory => make_dirs(dir, &rel)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let dest = prepare_dest(dir, &rel)?;
                let mode = entry.header().mode().ok();
                write_entry(path, &raw, &mut entry, &dest, mode)?;
            }
            tar::EntryType::Symlink => {
                return Err(archive_refusal(
                    path,
                    &raw,
                    "is a symbolic link; links in archives are refused",
                ))
            }
            tar::EntryType::Link => {
                return Err(archive_refusal(
                    path,
                    &raw,
                    "is a hard link; links in archives are refused",
                ))
            }
            other => {
                return Err(archive_refusal(
                    path,
                    &raw,
                    &format!("is of type {other:?}; only files and folders are extracted"),
                ))
            }
        }
    }
    Ok(())
}

/// Every regular file under `dir`, relative to it, sorted.
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if dir.exists() {
        collect_files(dir, Path::new(""), &mut out)?;
    }
    let mut rels: Vec<PathBuf> = out.into_iter().map(|(rel, _)| rel).collect();
    rels.sort();
    Ok(rels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_model_keeps_subfolders_and_reserves_the_main_name() {
        let src = tempfile::tempdir().unwrap();
        fs::write(
            src.path().join("inspect.py"),
            "# modelop.score\ndef f(x):\n    yield x\n",
        )
        .unwrap();
        fs::create_dir_all(src.path().join("utilities")).unwrap();
        fs::write(src.path().join("utilities/helpers.py"), "def h(): pass\n").unwrap();
        fs::write(src.path().join("weights.json"), "{}").unwrap();
        let model = LocatedModel::from_path(src.path(), None).unwrap();
        assert_eq!(model.source_name, "inspect.py");
        let job = tempfile::tempdir().unwrap();
        let m = materialize(&model, job.path()).unwrap();
        assert!(m.work_dir.join("__model.py").is_file());
        assert!(
            !m.work_dir.join("inspect.py").exists(),
            "the main source must not shadow the stdlib"
        );
        assert!(m.work_dir.join("utilities/helpers.py").is_file());
        assert!(m.work_dir.join("weights.json").is_file());
        assert!(m.output_dir.is_dir());
        assert!(m.home.is_dir());
    }

    #[test]
    fn several_sources_need_markers_or_a_name() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("a.py"), "def action(x):\n    yield x\n").unwrap();
        fs::write(src.path().join("b.py"), "def g(): pass\n").unwrap();
        let err = LocatedModel::from_path(src.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--source"), "{err}");
        fs::write(src.path().join("b.py"), "#modelop.score\ndef g(x): pass\n").unwrap();
        assert_eq!(
            LocatedModel::from_path(src.path(), None)
                .unwrap()
                .source_name,
            "b.py"
        );
        assert_eq!(
            LocatedModel::from_path(src.path(), Some("a.py"))
                .unwrap()
                .source_name,
            "a.py"
        );
    }

    #[test]
    fn zip_and_tar_gz_assets_are_extracted() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("m.py"), "def action(x):\n    yield x\n").unwrap();
        {
            let f = fs::File::create(src.path().join("pkg.zip")).unwrap();
            let mut w = zip::ZipWriter::new(f);
            w.start_file("inner/data.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"hello").unwrap();
            w.finish().unwrap();
        }
        {
            let f = fs::File::create(src.path().join("more.tar.gz")).unwrap();
            let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            let mut t = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, "t/x.bin", &b"abc"[..]).unwrap();
            t.into_inner().unwrap().finish().unwrap();
        }
        let model = LocatedModel::from_path(src.path(), None).unwrap();
        let job = tempfile::tempdir().unwrap();
        let m = materialize(&model, job.path()).unwrap();
        assert_eq!(
            fs::read(m.work_dir.join("inner/data.txt")).unwrap(),
            b"hello"
        );
        assert_eq!(fs::read(m.work_dir.join("t/x.bin")).unwrap(), b"abc");
    }

    fn tar_with(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        for (name, ty, target) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_mode(0o644);
            h.set_size(0);
            if ty.is_symlink() || ty.is_hard_link() {
                h.set_link_name(target).unwrap();
            }
            // Written by hand so that names `append_data` would refuse can be built.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            t.append(&h, &b""[..]).unwrap();
        }
        t.into_inner().unwrap()
    }

    fn materialized() -> (tempfile::TempDir, Materialized) {
        let job = tempfile::tempdir().unwrap();
        let model =
            LocatedModel::from_parts("m.py", "def action(x):\n    yield x\n".into(), None).unwrap();
        let m = materialize(&model, job.path()).unwrap();
        (job, m)
    }

    #[test]
    fn asset_names_stay_in_the_folder() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\0b",
            "",
            ".",
            &"n".repeat(256),
            &format!("{}/x", "d/".repeat(2100)),
        ] {
            let err = check_asset_name(bad).unwrap_err().to_string();
            assert!(err.starts_with("asset '"), "{bad:?}: {err}");
        }
        assert_eq!(
            check_asset_name("./utilities/helpers.py").unwrap(),
            PathBuf::from("utilities/helpers.py")
        );
        assert!(check_asset_name(&"n".repeat(255)).is_ok());
        let (_job, m) = materialized();
        let err = write_asset(&m, Path::new("../escape.txt"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'..'"), "{err}");
    }

    #[test]
    fn tars_as_tools_write_them_extract_with_their_modes() {
        // `git archive` starts with a global PAX header, `tar -C dir -c .` with `./`; a
        // folder entry may come after a file inside it; an executable stays executable.
        let mut t = tar::Builder::new(Vec::new());
        let mut entry = |name: &str, ty: tar::EntryType, mode: u32, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(ty);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_path(name).unwrap();
            h.set_cksum();
            t.append(&h, data).unwrap();
        };
        entry(
            "pax_global_header",
            tar::EntryType::XGlobalHeader,
            0o644,
            b"52 comment=0123456789012345678901234567890123456789\n",
        );
        entry("./", tar::EntryType::Directory, 0o755, b"");
        entry("./run.sh", tar::EntryType::Regular, 0o4755, b"#!/bin/sh\n");
        entry("d/_", tar::EntryType::Regular, 0o644, b"kept");
        entry("d/", tar::EntryType::Directory, 0o755, b"");
        let tar = t.into_inner().unwrap();
        let (_job, m) = materialized();
        write_asset(&m, Path::new("tools.tar"), &tar).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(m.work_dir.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "executable, set-id dropped: {mode:o}");
        assert_eq!(fs::read(m.work_dir.join("d/_")).unwrap(), b"kept");
        assert!(!m.work_dir.join("pax_global_header").exists());
    }

    #[test]
    fn a_tar_cannot_plant_a_link_that_a_later_asset_writes_through() {
        let outside = tempfile::tempdir().unwrap();
        let (_job, m) = materialized();
        let tar = tar_with(&[(
            "out",
            tar::EntryType::Symlink,
            &outside.path().display().to_string(),
        )]);
        let err = write_asset(&m, Path::new("evil.tar"), &tar)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("evil.tar: entry 'out' is a symbolic link"),
            "{err}"
        );
        assert!(!m.work_dir.join("out").exists());
        // Even a link made some other way is not written through.
        std::os::unix::fs::symlink(outside.path(), m.work_dir.join("out2")).unwrap();
        let err = write_asset(&m, Path::new("out2/x"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);

        let hard = tar_with(&[("h", tar::EntryType::Link, "/etc/hostname")]);
        let err = write_asset(&m, Path::new("hard.tar"), &hard)
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 'h' is a hard link"), "{err}");
    }

    #[test]
    fn archive_entries_leaving_the_folder_are_refused_with_a_message() {
        let (_job, m) = materialized();
        let tar = tar_with(&[("../up.txt", tar::EntryType::Regular, "")]);
        let err = write_asset(&m, Path::new("up.tar"), &tar)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("up.tar: entry '../up.txt' is refused"),
            "{err}"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gz,
            &tar_with(&[("/abs.txt", tar::EntryType::Regular, "")]),
        )
        .unwrap();
        let err = write_asset(&m, Path::new("abs.tar.gz"), &gz.finish().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");

        let mut zip_bytes = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut zip_bytes);
            w.add_symlink("link", "/etc", zip::write::SimpleFileOptions::default())
                .unwrap();
            w.finish().unwrap();
        }
        let err = write_asset(&m, Path::new("l.zip"), zip_bytes.get_ref())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("l.zip: entry 'link' is a symbolic link"),
            "{err}"
        );
    }

    #[test]
    fn an_existing_hard_link_is_replaced_not_written_into() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        fs::write(&target, "keep").unwrap();
        let (_job, m) = materialized();
        // Both temporary folders are in one filesystem, so the link can always be made.
        fs::hard_link(&target, m.work_dir.join("victim")).unwrap();
        write_asset(&m, Path::new("victim"), b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(
            fs::read_to_string(m.work_dir.join("victim")).unwrap(),
            "new"
        );
    }
}
