//! Embeds the dashboard bundle (`dist/` at the workspace root, made by scripts/build-web.sh) into
//! the binary when it exists at build time. Without it the build still succeeds: nothing is
//! embedded, and `radlens serve` looks for `dist/` at run time or says how to build it.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest.join("..").join("dist");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("dist_assets.rs");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RADLENS_NO_EMBED_DIST");
    let mut files = Vec::new();
    // Only watch dist/ when it exists: a missing watched path would rerun this script (and
    // rebuild the crate) on every build.
    if dist.is_dir() && std::env::var_os("RADLENS_NO_EMBED_DIST").is_none() {
        println!("cargo:rerun-if-changed={}", dist.display());
        collect(&dist, &dist, &mut files);
    }
    files.sort();
    let mut code =
        String::from("/// The embedded dashboard files: (path relative to dist/, bytes).\npub static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        code.push_str(&format!("    ({rel:?}, include_bytes!({:?})),\n", abs.display().to_string()));
    }
    code.push_str("];\n");
    std::fs::write(&out, code).expect("write dist_assets.rs");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.starts_with('.') {
            continue;
        }
        if ft.is_dir() {
            collect(root, &path, out);
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("inside dist")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let abs = path.canonicalize().unwrap_or(path.clone());
            out.push((rel, abs));
        }
    }
}
