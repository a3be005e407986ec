//! Requirements without their version pins, for old models whose exact versions no longer
//! build on this Python: the same packages, each at whatever version resolves.

/// `content` with every requirement's version specifiers (and hashes) dropped; names,
/// extras and environment markers stay, as do options (`-r`, `--index-url`, ...), URL and
/// path requirements and comments. Returns the new text and the names whose pins went.
pub fn relax_requirements(content: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(content.len());
    let mut relaxed = Vec::new();
    // A line ending in `\` goes on on the next (pip-compile's `--hash` lines): one
    // requirement, relaxed whole.
    let mut logical = String::new();
    for line in content.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        out.push_str(&relax_line(&logical, &mut relaxed));
        out.push('\n');
        logical.clear();
    }
    if !logical.is_empty() {
        out.push_str(&relax_line(&logical, &mut relaxed));
        out.push('\n');
    }
    (out, relaxed)
}

fn relax_line(line: &str, relaxed: &mut Vec<String>) -> String {
    // A comment starts at `#` at the line's start or after whitespace.
    let body = match line
        .char_indices()
        .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with(char::is_whitespace)))
    {
        Some((i, _)) => &line[..i],
        None => line,
    };
    let trimmed = body.trim();
    let is_reference =
        trimmed.contains("://") || trimmed.contains(" @ ") || trimmed.starts_with(['.', '/', '-']);
    if trimmed.is_empty() || is_reference {
        return line.to_owned();
    }
    // Hash options go with the pins they check.
    let without_hashes: String = trimmed
        .split_whitespace()
        .filter(|w| !w.starts_with("--hash"))
        .collect::<Vec<_>>()
        .join(" ");
    let (requirement, marker) = match without_hashes.split_once(';') {
        Some((r, m)) => (r.trim().to_owned(), Some(m.trim().to_owned())),
        None => (without_hashes.trim().to_owned(), None),
    };
    let name_end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(requirement.len());
    let name = &requirement[..name_end];
    if name.is_empty() {
        return line.to_owned();
    }
    let rest = requirement[name_end..].trim_start();
    let extras = if rest.starts_with('[') {
        rest.find(']').map_or("", |end| &rest[..=end])
    } else {
        ""
    };
    let specifiers = rest[extras.len()..].trim();
    if !specifiers.is_empty() {
        relaxed.push(name.to_owned());
    }
    match marker {
        Some(m) => format!("{name}{extras}; {m}"),
        None => format!("{name}{extras}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_go_names_extras_markers_and_options_stay() {
        let text = "# old model\n\
                    numpy==1.16.0\n\
                    pandas >= 0.24, < 0.25  # dataframes\n\
                    requests[socks]~=2.20; python_version >= \"3\"\n\
                    six\n\
                    --index-url https://example.org/simple\n\
                    -r other.txt\n\
                    pkg @ https://example.org/pkg-1.0.tar.gz\n\
                    ujson==1.35 --hash=sha256:abc\n";
        let (out, relaxed) = relax_requirements(text);
        assert_eq!(
            out,
            "# old model\n\
             numpy\n\
             pandas\n\
             requests[socks]; python_version >= \"3\"\n\
             six\n\
             --index-url https://example.org/simple\n\
             -r other.txt\n\
             pkg @ https://example.org/pkg-1.0.tar.gz\n\
             ujson\n"
        );
        assert_eq!(relaxed, ["numpy", "pandas", "requests", "ujson"]);
    }

    #[test]
    fn a_requirement_continued_over_lines_is_relaxed_whole() {
        let text = "ujson==1.35 \\\n    --hash=sha256:abc \\\n    --hash=sha256:def\nsix\n";
        let (out, relaxed) = relax_requirements(text);
        assert_eq!(out, "ujson\nsix\n");
        assert_eq!(relaxed, ["ujson"]);
    }
}
