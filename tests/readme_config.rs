//! Every config key driftwatch accepts is documented in the README.
//!
//! The keys come from the config structs themselves: every struct marked
//! `#[serde(deny_unknown_fields)]` in a `src/**/config.rs` file (the ones a
//! config file is read into), field names with `#[serde(rename)]` applied.
//! A new key without a line in the README fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn config_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            config_sources(&p, out);
        } else if p.file_name().is_some_and(|n| n == "config.rs") {
            out.push(p);
        }
    }
}

/// (struct, key) for every field of every `deny_unknown_fields` struct in `src`.
fn accepted_keys(src: &str) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let lines: Vec<&str> = src.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].contains("deny_unknown_fields") {
            i += 1;
            continue;
        }
        // The struct line follows the attributes.
        while i < lines.len() && !lines[i].contains("struct ") {
            i += 1;
        }
        let Some(line) = lines.get(i) else { break };
        let name = line
            .split("struct ")
            .nth(1)
            .and_then(|s| s.split([' ', '{', '<']).next())
            .unwrap_or_default()
            .to_string();
        i += 1;
        let mut rename: Option<String> = None;
        while i < lines.len() && lines[i].trim() != "}" {
            let l = lines[i].trim();
            if let Some(r) = l.strip_prefix("#[serde(rename = \"") {
                rename = r.split('"').next().map(str::to_string);
            } else if !l.starts_with("//") && !l.starts_with("#[") && l.contains(':') {
                let field = l
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ")
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                if !field.is_empty()
                    && field
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                {
                    keys.push((name.clone(), rename.take().unwrap_or(field)));
                }
            }
            i += 1;
        }
    }
    keys
}

fn documented(readme: &str, key: &str) -> bool {
    [
        format!("{key} ="),
        format!("`{key}`"),
        format!("[{key}]"),
        format!("[[{key}]]"),
        format!(".{key}]"),
        format!("{key}:"),
    ]
    .iter()
    .any(|form| readme.contains(form.as_str()))
}

#[test]
fn every_config_key_is_documented_in_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut files = Vec::new();
    config_sources(&root.join("src"), &mut files);
    files.sort();
    let mut all = Vec::new();
    for f in &files {
        all.extend(accepted_keys(&std::fs::read_to_string(f).unwrap()));
    }
    // The extraction itself works: keys the issue named, and a renamed one.
    for known in [
        "authserv_ids",
        "connect_timeout_secs",
        "database",
        "format",
        "type",
    ] {
        assert!(
            all.iter().any(|(_, k)| k == known),
            "extractor missed `{known}`: {all:?}"
        );
    }
    assert!(all.len() > 60, "only {} keys found", all.len());
    let missing: Vec<String> = all
        .iter()
        .filter(|(_, k)| !documented(&readme, k))
        .map(|(s, k)| format!("{k} (in {s})"))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys the README never mentions:\n  {}",
        missing.join("\n  ")
    );
}
