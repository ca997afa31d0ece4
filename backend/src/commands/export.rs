//! `radlens export RUN_DIR --out SITE_DIR`: one run as a self-contained, read-only static site
//! (the dashboard bundle plus that run's data) that any static file host serves, with no
//! radlens server. File layout: `radlens_shared::static_site`.
//!
//! Deep links: `index.html` is written into every route folder (`runs/RUN/`,
//! `runs/RUN/records/`, `runs/RUN/studies/SEGMENT/`, `playground/`), each pointing back to the
//! site root by a relative path, so a copied link opens on a host that only serves files, under
//! any sub-path. The dashboard sees the `radlens-site-root` meta tag and reads the data files
//! instead of `/api/...`; share links and compare (they need a server) are hidden. A study's
//! folder is `static_site::study_segment` of its id (percent-encoded: any id, one folder
//! directly under `studies/`), the segment the dashboard's study links hold.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use radlens_shared::api::RunList;
use radlens_shared::record::{CaseRecord, Pass};
use radlens_shared::static_site::{
    DataFile, MARKER_FILE, MARKER_KIND, MAX_FOLDER_NAME, ROOT_META, is_route_segment, root_prefix, study_key, study_segment,
};
use serde_json::json;

use crate::cli::ExportCmd;
use crate::server::assets::Assets;
use crate::server::images::{reencode_png, resolve_inside};
use crate::server::runs::{
    f32_bytes, image_id, image_map_of, image_map_payload, map_payload, method_map_payload, records_page, run_summary,
};
use crate::study::run_dir::{ANALYSIS, RunDir};

/// What an export wrote, and what it could not.
#[derive(Debug, Default)]
pub struct Exported {
    pub run: String,
    pub files: usize,
    pub bytes: u64,
    /// Studies with no deep-link folder (they open from inside the site): every study when the
    /// run's name cannot be a folder, else those whose encoded id is over `MAX_FOLDER_NAME`.
    pub studies_without_folder: Vec<String>,
    /// Image names that were not found or not readable (their cards show no X-ray).
    pub missing_images: Vec<String>,
}

pub fn run(cmd: &ExportCmd) -> anyhow::Result<()> {
    let out = export(&cmd.run_dir, &cmd.out, cmd.images.as_deref(), cmd.dist.as_deref())?;
    for s in &out.studies_without_folder {
        eprintln!(
            "radlens export: study {s:?} has no folder (run name not a plain folder name, or id over {MAX_FOLDER_NAME} bytes encoded): its page opens from inside the site, not from a typed URL"
        );
    }
    if !out.missing_images.is_empty() {
        eprintln!(
            "radlens export: {} image(s) not exported (no --images folder, or missing there), e.g. {}",
            out.missing_images.len(),
            out.missing_images[0]
        );
    }
    println!("site: {} ({} files, {:.1} MB)", cmd.out.display(), out.files, out.bytes as f64 / 1e6);
    println!("serve it with any static file server, e.g. `python3 -m http.server -d {}` and open /runs/{}", cmd.out.display(), out.run);
    Ok(())
}

/// Writes the site. `images`: the folder the records' image names are relative to (default: the
/// `--images` of the study's command line when that folder exists); `dist`: a dashboard bundle
/// to use instead of the one embedded in this binary.
pub fn export(run_dir: &Path, out: &Path, images: Option<&Path>, dist: Option<&Path>) -> anyhow::Result<Exported> {
    let run_dir = run_dir.canonicalize().with_context(|| format!("{}: no such run directory", run_dir.display()))?;
    let dir = RunDir::open(&run_dir).with_context(|| format!("{}: not a run directory", run_dir.display()))?;
    let manifest = dir.read_manifest().with_context(|| format!("{}: cannot read the manifest", run_dir.display()))?;
    let run = run_dir.file_name().and_then(|n| n.to_str()).context("the run directory has no usable name")?.to_owned();
    let assets = Assets::load(dist);
    if !assets.is_built() {
        bail!("the dashboard bundle is not built: run `scripts/build-web.sh release` and rebuild radlens (or pass --dist DIR)");
    }
    let images = images.map(Path::to_path_buf).or_else(|| images_of(&manifest.arguments));
    let records = dir.read_records().with_context(|| format!("{}: cannot read the records", run_dir.display()))?;

    prepare_out(out)?;
    let mut w = Writer { root: out.to_path_buf(), files: 0, bytes: 0 };
    let mut done = Exported { run: run.clone(), ..Default::default() };

    // The bundle, with index.html in every route folder.
    let index = assets.get("index.html").context("the bundle has no index.html")?;
    let index = std::str::from_utf8(index).context("the bundle's index.html is not UTF-8")?;
    for (name, bytes) in assets.files() {
        if name != "index.html" {
            w.write(name, bytes)?;
        }
    }
    let mut routes = vec![String::new(), "playground".into()];
    if is_route_segment(&run) {
        routes.extend([format!("runs/{run}"), format!("runs/{run}/records")]);
    }
    let mut studies: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let e = studies.entry(r.study_id.clone()).or_default();
        if r.pass == Pass::Image {
            e.push(i);
        }
    }
    for study in studies.keys() {
        let segment = study_segment(study);
        if is_route_segment(&run) && segment.len() <= MAX_FOLDER_NAME {
            routes.push(format!("runs/{run}/studies/{segment}"));
        } else {
            done.studies_without_folder.push(study.clone());
        }
    }
    for route in &routes {
        let page = page_html(index, &root_prefix(route))?;
        let name = if route.is_empty() { "index.html".to_owned() } else { format!("{route}/index.html") };
        w.write(&name, page.as_bytes())?;
    }

    // The data.
    let summary = run_summary(run.clone(), &run_dir).with_context(|| format!("{}: cannot read the manifest", run_dir.display()))?;
    w.json(&DataFile::Runs.path(), &RunList { runs: vec![summary] })?;
    match std::fs::read(dir.path(ANALYSIS)) {
        Ok(b) => w.write(&DataFile::Analysis.path(), &b)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("radlens export: {} is missing (run `radlens report`): the overview will say so", dir.path(ANALYSIS).display())
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.path(ANALYSIS).display())),
    }
    let all: Vec<usize> = (0..records.len()).collect();
    w.json(&DataFile::Records.path(), &page(&records, &all))?;
    let mut keys = HashSet::new();
    for (study, idx) in &studies {
        let key = study_key(study);
        if !keys.insert(key.clone()) {
            bail!("two studies share the file key {key} (one is {study:?}): rename one to export this run");
        }
        w.json(&DataFile::Study(key).path(), &page(&records, idx))?;
    }
    for (i, r) in records.iter().enumerate() {
        let Some(m) = &r.map else { continue };
        let values = dir.read_f32(&m.values).with_context(|| format!("record {i}: cannot read its map"))?;
        w.json(&DataFile::Map(i).path(), &map_payload(m, values))?;
        let rows = dir.read_f32(&m.head_rows).with_context(|| format!("record {i}: cannot read its head rows"))?;
        w.write(&DataFile::Rows(i).path(), &f32_bytes(&rows))?;
        for mm in r.trust.iter().flat_map(|t| &t.maps) {
            let values = dir.read_f32(&mm.values).with_context(|| format!("record {i}: cannot read its {} map", mm.provenance.method))?;
            w.json(&DataFile::MethodMap(i, mm.provenance.method).path(), &method_map_payload(&mm.provenance, &mm.metrics, values))?;
        }
    }
    // Each image of a multi-image record, by attention and by every other method it has.
    for (i, r) in records.iter().enumerate() {
        for (k, image) in r.images.iter().enumerate() {
            let methods = std::iter::once(image.provenance.method).chain(image.methods.iter().map(|m| m.provenance.method));
            for method in methods {
                let name = method.to_string();
                let (t, share, provenance, metrics) = image_map_of(image, &name).expect("a method the image has");
                let values = dir.read_f32(t).with_context(|| format!("record {i}: cannot read its {} image's {name} map", image.role))?;
                w.json(&DataFile::ImageMap(i, k, method).path(), &image_map_payload(image, share, provenance, metrics, values))?;
            }
        }
    }
    let mut seen = HashSet::new();
    // Every record's image, and a multi-image record's other images (prior, lateral).
    let names = records.iter().flat_map(CaseRecord::image_files);
    for name in names.filter(|n| seen.insert((*n).clone())) {
        let png = images
            .as_deref()
            .and_then(|d| resolve_inside(d, name))
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| reencode_png(&b, 512).ok());
        match png {
            Some(png) => w.write(&DataFile::Image(image_id(name)).path(), &png)?,
            None => done.missing_images.push(name.clone()),
        }
    }
    w.json(MARKER_FILE, &json!({ "kind": MARKER_KIND, "run": run, "run_id": manifest.run_id, "radlens": env!("CARGO_PKG_VERSION") }))?;
    done.files = w.files;
    done.bytes = w.bytes;
    Ok(done)
}

/// The images folder of the run's command line, when it still exists: `study --images DIR`,
/// or for `demo` its data folder's `cxr/` (`--data DIR`, else the bundled demo data).
fn images_of(arguments: &[String]) -> Option<PathBuf> {
    let value = |flag: &str| {
        let i = arguments.iter().position(|a| a == flag)?;
        arguments.get(i + 1).map(PathBuf::from)
    };
    let p = match value("--images") {
        Some(p) => p,
        None if arguments.get(1).is_some_and(|c| c == "demo") => {
            value("--data").unwrap_or_else(crate::commands::demo::default_data).join("cxr")
        }
        None => return None,
    };
    p.is_dir().then_some(p)
}

/// A records page holding `idx` (the shape of `GET /api/runs/RUN/records`), all in one page.
fn page<'a>(records: &'a [CaseRecord], idx: &[usize]) -> radlens_shared::api::RecordsPage<&'a CaseRecord> {
    records_page(records, idx, 0, idx.len())
}

/// An empty (or new) folder, or a previous export (whose contents are replaced). Anything else
/// is refused: an export never deletes files it did not write.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        if !out.is_dir() {
            bail!("--out {}: exists and is not a folder", out.display());
        }
        let non_empty = std::fs::read_dir(out).with_context(|| format!("read {}", out.display()))?.next().is_some();
        if non_empty {
            let marker = out.join(MARKER_FILE);
            let is_export = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["kind"] == MARKER_KIND);
            if !is_export {
                bail!(
                    "--out {}: the folder is not empty and is not a previous radlens export (no {MARKER_FILE} of kind {MARKER_KIND}); refusing to overwrite it: choose a new or empty folder",
                    out.display()
                );
            }
            for e in std::fs::read_dir(out).with_context(|| format!("read {}", out.display()))? {
                let p = e.with_context(|| format!("read {}", out.display()))?.path();
                let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                r.with_context(|| format!("remove {} (from the previous export)", p.display()))?;
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))
}

/// index.html for a page `prefix` (`./`, `../../`) below the site root: the root meta tag, and
/// root-absolute asset URLs made relative, so the site works under any sub-path.
pub fn page_html(index: &str, prefix: &str) -> anyhow::Result<String> {
    let head = index.find("<head>").context("the bundle's index.html has no <head>")?;
    let meta = format!("\n  <meta name=\"{ROOT_META}\" content=\"{prefix}\">");
    let mut html = String::with_capacity(index.len() + 80);
    html.push_str(&index[..head + "<head>".len()]);
    html.push_str(&meta);
    html.push_str(&index[head + "<head>".len()..]);
    Ok(html.replace("href=\"/", &format!("href=\"{prefix}")).replace("src=\"/", &format!("src=\"{prefix}")))
}

struct Writer {
    root: PathBuf,
    files: usize,
    bytes: u64,
}

impl Writer {
    fn write(&mut self, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        self.files += 1;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn json(&mut self, rel: &str, v: &impl serde::Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_vec(v).with_context(|| format!("encode {rel}"))?;
        self.write(rel, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_point_back_to_the_root_relatively() {
        let index = "<!doctype html>\n<html><head>\n<link rel=\"stylesheet\" href=\"/style.css\">\n<script type=\"module\" src=\"/boot.js\"></script>\n</head></html>";
        let page = page_html(index, "../../").unwrap();
        assert!(page.contains("<meta name=\"radlens-site-root\" content=\"../../\">"));
        assert!(page.contains("href=\"../../style.css\""));
        assert!(page.contains("src=\"../../boot.js\""));
        assert!(!page.contains("\"/"));
        assert!(page_html("<html></html>", "./").is_err());
    }

    #[test]
    fn a_non_empty_folder_that_is_not_an_export_is_refused_by_name() {
        let tmp = std::env::temp_dir().join(format!("radlens-export-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("thesis.tex"), "keep me").unwrap();
        let e = prepare_out(&tmp).unwrap_err().to_string();
        assert!(e.contains(&tmp.display().to_string()) && e.contains("not a previous radlens export"), "{e}");
        assert!(tmp.join("thesis.tex").is_file(), "nothing was deleted");
        // A previous export is replaced.
        std::fs::remove_file(tmp.join("thesis.tex")).unwrap();
        std::fs::write(tmp.join(MARKER_FILE), format!("{{\"kind\":\"{MARKER_KIND}\"}}")).unwrap();
        std::fs::write(tmp.join("old.json"), "{}").unwrap();
        prepare_out(&tmp).unwrap();
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_study_command_line_names_the_images_folder() {
        let here = std::env::temp_dir();
        let args: Vec<String> = ["radlens", "study", "--images", here.to_str().unwrap()].iter().map(|s| s.to_string()).collect();
        assert_eq!(images_of(&args), Some(here));
        assert_eq!(images_of(&["radlens".into(), "--images".into(), "/no/such/dir".into()]), None);
        assert_eq!(images_of(&[]), None);
        let demo: Vec<String> = ["radlens", "demo", "--out", "runs/demo"].iter().map(|s| s.to_string()).collect();
        assert_eq!(images_of(&demo), Some(crate::commands::demo::default_data().join("cxr")));
    }
}
