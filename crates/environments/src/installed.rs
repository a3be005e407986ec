//! What an environment holds: the distributions installed in a `site-packages` folder, as
//! their `*.dist-info` folders name them.

use std::path::Path;

/// The distributions installed in `site_packages`, as `name==version`, sorted by name
/// (case-insensitively); empty when the folder cannot be read.
pub fn installed_libraries(site_packages: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(site_packages) else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".dist-info")?;
            // `name-version`: a distribution's name has no `-` there (it is normalized to
            // `_`), its version none either.
            let (name, version) = stem.rsplit_once('-')?;
            Some(format!("{name}=={version}"))
        })
        .collect();
    found.sort_by_key(|l| l.to_ascii_lowercase());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_info_folders_name_the_libraries() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "numpy-2.4.6.dist-info",
            "Jinja2-3.1.4.dist-info",
            "numpy",
            "__pycache__",
            "typing_extensions-4.12.2.dist-info",
        ] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        assert_eq!(
            installed_libraries(dir.path()),
            ["Jinja2==3.1.4", "numpy==2.4.6", "typing_extensions==4.12.2"]
        );
        assert!(installed_libraries(&dir.path().join("missing")).is_empty());
    }
}
