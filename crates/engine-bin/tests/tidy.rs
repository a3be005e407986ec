//! The workspace's written invariants (docs/ARCHITECTURE.md, "Invariants"), checked by reading
//! the workspace's own files, in the style of rust-analyzer's tidy tests. Each rule lists every
//! file and line that breaks it, so a failure says what to fix.
//!
//! Sources are read with comments and the contents of string and character literals blanked
//! out (`strip`), so a rule is never tripped by prose or by a message that names what it
//! forbids.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item, Table};

/// The one crate allowed to name pyo3.
const PYTHON_RUNNER: &str = "runner-python";
/// The binary: the one crate allowed to read the environment and print.
const BINARY: &str = "engine-bin";
/// The servers tests run against: test code in a crate of its own (unpublished), held to
/// the rules of tests rather than of libraries: it reads the environment (which Python),
/// starts servers and panics when one is missing.
const TEST_SUPPORT: &str = "test-servers";

/// The one library file that starts worker processes: the supervisor, which runs every
/// worker under the watchdog.
const SUPERVISOR: &str = "crates/worker/src/supervisor.rs";
/// Libraries that start processes which are not model workers, and why.
const STARTS_NON_WORKERS: &[&str] = &[
    // uv, pip and venv building an environment, under a timeout of their own; no model
    // code runs in them.
    "environments",
    // spark-submit: the model's driver runs under Spark's own supervision (executors'
    // memory is Spark's to limit); its process group is tied to the engine
    // (worker::tie_to_engine) and killed whole on cancel.
    "engine-spark",
];

/// Dependencies a crate needs although its code never names them. Each is used only through
/// a feature or another crate's macro; keep the reason next to it.
/// Entries are (crate, dependency).
const USED_WITHOUT_NAMING: &[(&str, &str)] = &[
    // build.rs's `pyo3_build_config::get()` needs a direct dependency on pyo3 (pyo3-ffi
    // publishes the interpreter's configuration to direct dependents only) to link libpython
    // with an rpath; no source of the binary names pyo3.
    (BINARY, "pyo3"),
    // The gRPC messages and server are generated into OUT_DIR at build time
    // (`tonic::include_proto!`): the generated code names prost and tonic-prost.
    ("inference-grpc", "prost"),
    ("inference-grpc", "tonic-prost"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

struct Crate {
    name: String,
    dir: PathBuf,
    manifest_path: PathBuf,
    manifest_text: String,
    manifest: Document<String>,
}

/// The library crates: every crate but the binary and the tests' support.
fn libraries() -> impl Iterator<Item = Crate> {
    crates()
        .into_iter()
        .filter(|c| c.name != BINARY && c.name != TEST_SUPPORT)
}

fn crates() -> Vec<Crate> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root().join("crates"))
        .expect("crates/")
        .map(|e| e.expect("a crates/ entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() > 5, "too few crates found: {dirs:?}");
    dirs.into_iter()
        .map(|dir| {
            let manifest_path = dir.join("Cargo.toml");
            let manifest_text = fs::read_to_string(&manifest_path).expect("Cargo.toml");
            let manifest = Document::parse(manifest_text.clone()).expect("Cargo.toml parses");
            let name = manifest["package"]["name"]
                .as_str()
                .expect("package.name")
                .to_owned();
            Crate {
                name,
                dir,
                manifest_path,
                manifest_text,
                manifest,
            }
        })
        .collect()
}

/// Every `.rs` file under `dir`, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A source file with comments and literal contents blanked (same length in chars, same line
/// breaks).
struct Source {
    path: PathBuf,
    code: String,
}

impl Source {
    fn read(path: &Path) -> Source {
        let text = fs::read_to_string(path).expect("a source file");
        Source {
            path: path.to_path_buf(),
            code: strip(&text),
        }
    }

    fn line_of(&self, byte: usize) -> usize {
        self.code[..byte].matches('\n').count() + 1
    }

    fn at(&self, byte: usize) -> String {
        format!("{}:{}", rel(&self.path), self.line_of(byte))
    }
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `text` with comments and the insides of string, byte-string, raw-string and char literals
/// replaced by spaces (line breaks kept, so lines and byte offsets of code stay put; the
/// quotes themselves are kept).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(c[i - 1]) || c[i - 1] == 'b')
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            out.extend(&c[i..=j]);
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    out.extend(&c[i..=i + hashes]);
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() {
                out.push('"');
                i += 1;
            }
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{1F600}'); anything else after a quote is a
            // lifetime or a label.
            out.push('\'');
            i += 1;
            if c[i] == '\\' {
                // The backslash and the character it escapes (which may be a quote).
                for _ in 0..2 {
                    if i < c.len() {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                }
            }
            while i < c.len() && c[i] != '\'' {
                blank(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Byte offsets where `word` occurs in `code` as a whole path segment (not inside a longer
/// identifier on its left).
fn find_word(code: &str, word: &str) -> Vec<usize> {
    code.match_indices(word)
        .map(|(at, _)| at)
        .filter(|&at| !code[..at].chars().next_back().is_some_and(is_ident))
        .collect()
}

fn report(rule: &str, breaks: BTreeSet<String>) {
    if breaks.is_empty() {
        return;
    }
    let mut msg = format!("{rule}:\n");
    for b in &breaks {
        let _ = writeln!(msg, "  {b}");
    }
    panic!("{msg}");
}

fn dependency_tables(manifest: &Document<String>) -> Vec<(&'static str, &Table)> {
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .into_iter()
        .filter_map(|section| {
            manifest
                .get(section)
                .and_then(Item::as_table)
                .map(|t| (section, t))
        })
        .collect()
}

/// `path:line` of `key` in a manifest table.
fn key_at(path: &Path, text: &str, table: &Table, key: &str) -> String {
    let line = table
        .get_key_value(key)
        .and_then(|(k, _)| k.span())
        .map(|span| text[..span.start].matches('\n').count() + 1)
        .unwrap_or(0);
    format!("{}:{line}", rel(path))
}

#[test]
fn pyo3_appears_only_in_the_python_runner() {
    let mut breaks = BTreeSet::new();
    for c in crates() {
        if c.name == PYTHON_RUNNER {
            continue;
        }
        for (section, table) in dependency_tables(&c.manifest) {
            // The binary's link-only dependency (see USED_WITHOUT_NAMING); its sources are
            // still checked below.
            let link_only = c.name == BINARY && section == "dependencies";
            if table.contains_key("pyo3") && !link_only {
                breaks.insert(format!(
                    "{}: [{section}] pyo3",
                    key_at(&c.manifest_path, &c.manifest_text, table, "pyo3")
                ));
            }
        }
        for file in rust_files(&c.dir) {
            let src = Source::read(&file);
            for at in crate_mentions(&src.code, "pyo3") {
                breaks.insert(format!("{}: names pyo3", src.at(at)));
            }
        }
    }
    report(
        "pyo3 outside crates/runner-python (the binary may use pyo3-build-config to link)",
        breaks,
    );
}

#[test]
fn libraries_read_no_environment_and_print_nothing() {
    let mut breaks = BTreeSet::new();
    for c in libraries() {
        for file in rust_files(&c.dir.join("src")) {
            let src = Source::read(&file);
            for pattern in [
                "env::var",
                "env::set_var",
                "env::remove_var",
                "println!",
                "eprintln!",
                "print!",
                "eprint!",
            ] {
                for at in find_word(&src.code, pattern) {
                    breaks.insert(format!("{}: {pattern}", src.at(at)));
                }
            }
        }
    }
    report(
        "a library's src/ reads or changes the environment, or prints (only crates/engine-bin may)",
        breaks,
    );
}

#[test]
fn every_library_denies_unwrap_and_expect() {
    let mut breaks = BTreeSet::new();
    for c in libraries() {
        let lib = c.dir.join("src/lib.rs");
        let src = Source::read(&lib);
        if !src
            .code
            .contains("#![deny(clippy::unwrap_used, clippy::expect_used)]")
        {
            breaks.insert(rel(&lib));
        }
    }
    report(
        "a library's crate root does not deny clippy::unwrap_used and clippy::expect_used",
        breaks,
    );
}

#[test]
fn only_the_supervisor_starts_worker_processes() {
    let mut breaks = BTreeSet::new();
    for c in libraries().filter(|c| !STARTS_NON_WORKERS.contains(&c.name.as_str())) {
        for file in rust_files(&c.dir.join("src")) {
            if rel(&file) == SUPERVISOR {
                continue;
            }
            let src = Source::read(&file);
            for pattern in ["process::Command", "Command::new", "fork("] {
                for at in find_word(&src.code, pattern) {
                    breaks.insert(format!("{}: {pattern}", src.at(at)));
                }
            }
        }
    }
    report(
        "a library starts a process outside the worker supervisor (every worker runs under \
         its watchdog: use worker::WorkerProcess)",
        breaks,
    );
}

/// Where `code` names the crate `name` (its `-` read as `_`): `name::`, `use name` or
/// `extern crate name`.
fn crate_mentions(code: &str, name: &str) -> Vec<usize> {
    let name = name.replace('-', "_");
    let whole = |pattern: String| -> Vec<usize> {
        find_word(code, &pattern)
            .into_iter()
            .filter(|&at| {
                !code[at + pattern.len()..]
                    .chars()
                    .next()
                    .is_some_and(is_ident)
            })
            .collect()
    };
    let mut out = find_word(code, &format!("{name}::"));
    out.extend(whole(format!("use {name}")));
    out.extend(whole(format!("extern crate {name}")));
    out.sort_unstable();
    out
}

fn names_crate(code: &str, name: &str) -> bool {
    !crate_mentions(code, name).is_empty()
}

#[test]
fn every_declared_dependency_is_used() {
    let mut breaks = BTreeSet::new();
    let all = crates();
    for c in &all {
        let read = |dirs: &[&str]| -> String {
            dirs.iter()
                .flat_map(|d| rust_files(&c.dir.join(d)))
                .map(|f| Source::read(&f).code)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let src = read(&["src"]);
        let everything = read(&["src", "tests", "benches", "examples"]);
        let build = match fs::read_to_string(c.dir.join("build.rs")) {
            Ok(text) => strip(&text),
            Err(_) => String::new(),
        };
        for (section, table) in dependency_tables(&c.manifest) {
            let code = match section {
                "dependencies" => &src,
                "dev-dependencies" => &everything,
                _ => &build,
            };
            for (dep, _) in table.iter() {
                let allowed = USED_WITHOUT_NAMING
                    .iter()
                    .any(|(krate, d)| *krate == c.name && *d == dep);
                if !allowed && !names_crate(code, dep) {
                    breaks.insert(format!(
                        "{}: [{section}] {dep} is never named by {}",
                        key_at(&c.manifest_path, &c.manifest_text, table, dep),
                        match section {
                            "dependencies" => "src/",
                            "dev-dependencies" => "src/, tests/, benches/ or examples/",
                            _ => "build.rs",
                        }
                    ));
                }
            }
        }
    }
    // Every workspace dependency is inherited by some crate.
    let root_path = root().join("Cargo.toml");
    let root_text = fs::read_to_string(&root_path).expect("the workspace Cargo.toml");
    let root_manifest = Document::parse(root_text.clone()).expect("it parses");
    let shared = root_manifest["workspace"]["dependencies"]
        .as_table()
        .expect("[workspace.dependencies]");
    for (dep, _) in shared.iter() {
        let inherited = all.iter().any(|c| {
            dependency_tables(&c.manifest)
                .iter()
                .any(|(_, t)| t.contains_key(dep))
        });
        if !inherited {
            breaks.insert(format!(
                "{}: [workspace.dependencies] {dep} is declared by no crate",
                key_at(&root_path, &root_text, shared, dep)
            ));
        }
    }
    report("a declared dependency nothing uses", breaks);
}

/// The body of every test function in `code`: byte ranges from its `{` to its `}`.
fn test_bodies(code: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for (attr, _) in code.match_indices("#[") {
        let Some(end) = code[attr..].find(']') else {
            continue;
        };
        let inside = code[attr + 2..attr + end].trim();
        let is_test = inside == "test"
            || inside.ends_with("::test")
            || inside.contains("::test(")
            || inside.starts_with("test(");
        if !is_test {
            continue;
        }
        // The function this attribute belongs to, and its body.
        let Some(fn_at) = find_word(&code[attr..], "fn ").first().map(|f| attr + f) else {
            continue;
        };
        let Some(open) = code[fn_at..].find('{').map(|o| fn_at + o) else {
            continue;
        };
        let mut depth = 0usize;
        let mut close = None;
        for (i, &b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        if let Some(close) = close {
            out.push(open..close + 1);
        }
    }
    out
}

/// Where a test function returns success early: `return;` or `return Ok(());` in its body
/// (a closure's `return value;` is not one).
fn early_returns(code: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for body in test_bodies(code) {
        let text = &code[body.clone()];
        for at in find_word(text, "return") {
            let rest: String = text[at + "return".len()..]
                .chars()
                .filter(|c| !c.is_whitespace())
                .take("Ok(());".len())
                .collect();
            if rest.starts_with(';') || rest.starts_with("Ok(());") {
                out.push(body.start + at);
            }
        }
    }
    out
}

#[test]
fn no_test_passes_by_returning_early() {
    let mut breaks = BTreeSet::new();
    for c in crates() {
        for file in rust_files(&c.dir) {
            let src = Source::read(&file);
            for at in early_returns(&src.code) {
                breaks.insert(format!("{}: a test returns before its checks", src.at(at)));
            }
        }
    }
    report(
        "a test that can pass without checking (make what it needs certain, or fail saying what is missing)",
        breaks,
    );
}

#[test]
fn the_checks_find_what_they_look_for() {
    // The scanners themselves, on code written to break each rule once.
    let code = strip(
        "// env::var in a comment\n\
         let s = \"println!(\\\"x\\\")\"; let c = '\"'; let q = '\\''; let r = r#\"pyo3::x\"#;\n\
         fn f<'a>(x: &'a str) { std::env::var(\"X\"); }\n\
         #[test]\nfn t() {\n    if cond() { return; }\n    assert!(true);\n}\n\
         #[tokio::test]\nasync fn u() -> Result<(), E> {\n    return Ok(());\n}\n\
         #[test]\nfn v() { let f = |x: u8| -> u8 { return x; }; }\n",
    );
    assert_eq!(find_word(&code, "env::var").len(), 1, "{code}");
    assert!(find_word(&code, "println!").is_empty(), "{code}");
    assert!(find_word(&code, "pyo3::").is_empty(), "{code}");
    assert_eq!(test_bodies(&code).len(), 3, "{code}");
    let lines: Vec<usize> = early_returns(&code)
        .into_iter()
        .map(|at| code[..at].matches('\n').count() + 1)
        .collect();
    assert_eq!(lines, [6, 11], "{code}");
    assert!(names_crate("use serde::Deserialize;", "serde"));
    assert!(names_crate("x = serde_json::to_string(&y);", "serde-json"));
    assert!(!names_crate("use serde_json::Value;", "serde"));
    assert!(!names_crate("my_tracing::info!()", "tracing"));
}
