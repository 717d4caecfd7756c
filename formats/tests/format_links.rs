//! The code links to FORMAT.md's sections as `FORMAT.md#anchor` instead of restating them;
//! every such anchor must name a heading of FORMAT.md (as GitHub makes anchors), so that
//! renaming a section breaks this test rather than the links.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces turned into `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_format_md_anchor_in_the_code_names_a_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let spec = std::fs::read_to_string(root.join("FORMAT.md")).unwrap();
    let anchors: BTreeSet<String> = spec
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    assert!(anchors.contains("32-chunk-data-predictive-zstd"), "{anchors:?}");

    let mut files = Vec::new();
    for dir in ["formats/src", "tools/src", "trainer/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut links = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices("FORMAT.md#") {
            let rest = &text[i + "FORMAT.md#".len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '-')).unwrap_or(rest.len());
            links += 1;
            if !anchors.contains(&rest[..end]) {
                broken.push(format!("{}: FORMAT.md#{}", file.display(), &rest[..end]));
            }
        }
    }
    assert!(links >= 20, "only {links} links found");
    assert!(broken.is_empty(), "anchors with no heading in FORMAT.md:\n{}", broken.join("\n"));
}
