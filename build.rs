//! Embeds the shipped parsers and their fixtures in the binary for
//! `driftwatch demo` (src/demo.rs), so the demo directory always carries every
//! parser and every fixture the checkout has, and `parsers test` passes there.

use std::path::{Path, PathBuf};

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push((rel.to_string_lossy().replace('\\', "/"), path.clone()));
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut files = Vec::new();
    for dir in ["parsers", "fixtures"] {
        println!("cargo:rerun-if-changed={dir}");
        walk(&manifest, &manifest.join(dir), &mut files)?;
    }
    files.retain(|(rel, _)| {
        rel.ends_with(".toml")
            || rel.ends_with(".eml")
            || rel.ends_with(".json")
            || rel.ends_with(".md")
    });
    files.sort();
    let mut code = String::from("&[\n");
    for (rel, path) in &files {
        code.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?}) as &[u8]),\n",
            path.to_string_lossy()
        ));
    }
    code.push_str("]\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("shipped.rs");
    std::fs::write(out, code)
}
