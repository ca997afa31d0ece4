//! `radlens study` over rows with a prior (and a lateral) image, issue 21: the fixture's Gemma3
//! with several images per prompt, every record's attention split per image on each image's own
//! grid, a resume that adds nothing, the analysis, report and export; a missing prior and a
//! single-image model given a prior are per-row error records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use radlens::commands::demo::write_demo_models;
use radlens::study::run_dir::RunDir;
use radlens_shared::fusion::MapMethod;
use radlens_shared::record::{CaseRecord, Pass};

use crate::support::{Scratch, fixture, radlens, run_records};

pub(crate) const CURRENT: &str = "frontal_gray_96x120.png";
pub(crate) const PRIOR: &str = "prior_rgb_140x128.png";
pub(crate) const LATERAL: &str = "lateral_gray_110x90.png";

fn study(csv: &Path, model: (&str, &Path), out: &Path) {
    study_with(csv, model, out, &[]);
}

fn study_with(csv: &Path, model: (&str, &Path), out: &Path, extra: &[&str]) {
    study_on(csv, &fixture("multi-image-v1/images"), model, out, extra);
}

/// `radlens study` of `csv` over `images` with one model, 2 new tokens and 50 resamples (fast),
/// plus `extra`; the run must succeed.
pub(crate) fn study_on(csv: &Path, images: &Path, model: (&str, &Path), out: &Path, extra: &[&str]) {
    let model = format!("{}={}", model.0, model.1.display());
    let args = [
        "study",
        "--csv",
        csv.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        &model,
        "--max-new-tokens",
        "2",
        "--resamples",
        "50",
    ];
    let args: Vec<&str> = args.iter().chain(extra).copied().collect();
    let run = radlens(&args);
    assert!(run.status.success(), "radlens {}: {}", args.join(" "), String::from_utf8_lossy(&run.stderr));
}

fn by_line(records: &[CaseRecord], line: usize) -> &CaseRecord {
    records.iter().find(|r| r.csv_line == line && r.pass == Pass::Image).unwrap_or_else(|| panic!("no record of CSV line {line}"))
}

#[test]
fn a_study_with_priors_splits_every_map_per_image_and_resumes_analyses_and_exports() {
    let scratch = Scratch::new("multi-image-study");
    let csv = scratch.write(
        "study.csv",
        &format!(
            "study_id,image_path,prior_image_path,lateral_image_path,question,answer,polarity\n\
             s1,{CURRENT},{PRIOR},,Is there a pleural effusion?,yes,1\n\
             s1,{CURRENT},{PRIOR},,Is there no pleural effusion?,no,-1\n\
             s2,{CURRENT},,,Is there a pneumothorax?,no,1\n\
             s3,{CURRENT},missing_prior.png,,Is there an effusion?,yes,1\n\
             s4,{CURRENT},{PRIOR},{LATERAL},Is the effusion larger than before?,yes,1\n"
        ),
    );
    let model = fixture("multi-image-v1/gemma3-tiny-multi");
    let out = scratch.path().join("run");
    study(&csv, ("gemma3-multi", &model), &out);
    let records = run_records(&out);
    let dir = RunDir::open(&out).unwrap();

    let sizes = |path: &str| match path {
        CURRENT => (96, 120),
        PRIOR => (140, 128),
        LATERAL => (110, 90),
        other => panic!("unexpected image {other}"),
    };
    for (line, want) in [(2, vec!["prior", "current"]), (3, vec!["prior", "current"]), (6, vec!["prior", "current", "lateral"])] {
        let r = by_line(&records, line);
        assert!(r.error.is_none(), "line {line}: {:?}", r.error);
        let roles: Vec<&str> = r.images.iter().map(|i| i.role.as_str()).collect();
        assert_eq!(roles, want, "line {line}: one map per image, in prompt order");
        let total: f64 = r.images.iter().map(|i| i.image_mass_share).sum();
        assert!((total - 1.0).abs() < 1e-6, "line {line}: shares sum to {total}");
        for i in &r.images {
            let g = i.provenance.geometry;
            assert_eq!((g.image_w, g.image_h), sizes(&i.image), "line {line}: {} map on its own image", i.role);
            assert_eq!(i.values.shape, vec![g.h, g.w], "line {line}: {} map on its own grid", i.role);
            assert!((0.0..=1.0).contains(&i.image_mass_share));
            let values = dir.read_f32(&i.values).unwrap();
            let sum: f32 = values.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "line {line}: {} map sums to {sum}", i.role);
        }
        let current = r.images.iter().find(|i| i.role == "current").unwrap();
        let map = r.map.as_ref().expect("the record's own map is the current image's");
        assert_eq!(map.provenance.geometry, current.provenance.geometry);
        assert_eq!(current.image, CURRENT);
    }
    let single = by_line(&records, 4);
    assert!(single.error.is_none() && single.images.is_empty() && single.map.is_some(), "a single-image row is as before");

    let missing = by_line(&records, 5);
    let message = &missing.error.as_ref().expect("a missing prior is the row's error").message;
    assert!(message.contains("prior_image_path") && message.contains("missing_prior.png"), "{message}");

    assert!(out.join("analysis.json").is_file() && out.join("report.md").is_file(), "analysis and report written");
    let analysis: radlens_shared::record::Analysis =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    let images = &analysis.models[0].images;
    assert_eq!(images.keys().map(String::as_str).collect::<Vec<_>>(), ["current", "lateral", "prior"]);
    assert_eq!((images["current"].records, images["prior"].records, images["lateral"].records), (3, 3, 1));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Several images per row"), "the report has the per-image section");

    // A rerun finds everything done.
    study(&csv, ("gemma3-multi", &model), &out);
    let again = run_records(&out);
    assert_eq!(again.len(), records.len(), "a resume adds nothing");
    let keys: BTreeSet<_> = again.iter().map(CaseRecord::key).collect();
    assert_eq!(keys.len(), again.len(), "no record twice");

    // The variants of s1 share their prompt prefix, both images inside it: the same records
    // as full prefills.
    let full = scratch.path().join("full");
    study_with(&csv, ("gemma3-multi", &model), &full, &["--no-prefix-sharing"]);
    let full_records = run_records(&full);
    for line in [2, 3, 6] {
        let (a, b) = (by_line(&records, line), by_line(&full_records, line));
        assert_eq!(a.answer_text, b.answer_text, "line {line}");
        let (ma, mb) = (a.yes_no_margin.unwrap(), b.yes_no_margin.unwrap());
        assert!((ma - mb).abs() < 1e-3, "line {line}: margin {ma} shared, {mb} full");
        for (x, y) in a.images.iter().zip(&b.images) {
            assert!((x.image_mass_share - y.image_mass_share).abs() < 1e-4, "line {line} {}: {x:?} vs {y:?}", x.role);
        }
    }

    // Two shards merged: every per-image map is copied with its record.
    let shards: Vec<PathBuf> = (0..2).map(|i| scratch.path().join(format!("shard-{i}"))).collect();
    for (i, d) in shards.iter().enumerate() {
        study_with(&csv, ("gemma3-multi", &model), d, &["--shard", &format!("{i}/2")]);
    }
    let merged = scratch.path().join("merged");
    let images_dir = fixture("multi-image-v1/images");
    let merge = radlens(&[
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
        "--images",
        images_dir.to_str().unwrap(),
    ]);
    assert!(merge.status.success(), "radlens merge: {}", String::from_utf8_lossy(&merge.stderr));
    let merged_dir = RunDir::open(&merged).unwrap();
    let merged_records = run_records(&merged);
    for line in [2, 3, 6] {
        let (a, b) = (by_line(&records, line), by_line(&merged_records, line));
        assert_eq!(a.images.len(), b.images.len(), "line {line}");
        for (x, y) in a.images.iter().zip(&b.images) {
            assert_eq!(dir.read_f32(&x.values).unwrap(), merged_dir.read_f32(&y.values).unwrap(), "line {line} {}", x.role);
        }
    }

    // The export with a stand-in bundle (the dashboard's own is tested in `browser::export`): the
    // run's data, records and attention files included, is what this checks.
    let dist = scratch.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html><html><head><title>radlens</title></head><body></body></html>").unwrap();
    let site: PathBuf = scratch.path().join("site");
    let images = fixture("multi-image-v1/images");
    let args = [
        "export",
        out.to_str().unwrap(),
        "--out",
        site.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--dist",
        dist.to_str().unwrap(),
    ];
    let export = radlens(&args);
    assert!(export.status.success(), "radlens export: {}", String::from_utf8_lossy(&export.stderr));
    assert!(site.join("index.html").is_file(), "the site is written");
}

#[test]
fn a_single_image_model_given_a_prior_is_a_per_row_error() {
    let scratch = Scratch::new("multi-image-llava");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let (name, dir) = models.iter().find(|(n, _)| n.contains("llava")).expect("the demo's LLaVA");
    let csv = scratch.write(
        "study.csv",
        &format!(
            "study_id,image_path,prior_image_path,question,answer\n\
             s1,{CURRENT},{PRIOR},Is there a pleural effusion?,yes\n\
             s2,{CURRENT},,Is there a pleural effusion?,yes\n"
        ),
    );
    let out = scratch.path().join("run");
    study(&csv, (name, dir), &out);
    let records = run_records(&out);
    let message = &by_line(&records, 2).error.as_ref().expect("a prior for LLaVA is the row's error").message;
    assert!(message.contains("takes one image"), "{message}");
    assert!(by_line(&records, 3).error.is_none(), "the run goes on");
}

/// Two rows: line 2 with a prior, line 3 without.
fn with_and_without_prior(scratch: &Scratch) -> PathBuf {
    scratch.write(
        "study.csv",
        &format!(
            "study_id,image_path,prior_image_path,question,answer\n\
             s1,{CURRENT},{PRIOR},Is there a pleural effusion?,yes\n\
             s2,{CURRENT},,Is there a pneumothorax?,no\n"
        ),
    )
}

#[test]
fn prior_blank_runs_rows_with_a_prior_on_the_blank_image_and_skips_the_others() {
    let scratch = Scratch::new("multi-image-prior-blank");
    let csv = with_and_without_prior(&scratch);
    let model = fixture("multi-image-v1/gemma3-tiny-multi");
    let out = scratch.path().join("run");
    study_with(&csv, ("gemma3-multi", &model), &out, &["--conditions", "prior_blank"]);
    let records = run_records(&out);
    let of = |line: usize| {
        records
            .iter()
            .find(|r| r.csv_line == line && r.pass == Pass::PriorBlank)
            .unwrap_or_else(|| panic!("no prior_blank record of line {line}"))
    };
    let ran = of(2);
    assert!(ran.error.is_none() && ran.parsed_answer.is_some(), "{:?}", ran.error);
    assert!(ran.condition.as_ref().is_some_and(|c| c.not_run.is_none()) && ran.images.is_empty() && ran.map.is_none());
    let skipped = of(3);
    let why = skipped.condition.as_ref().and_then(|c| c.not_run.clone()).expect("a row without a prior is not run");
    assert!(why.contains("no prior image"), "{why}");
    let analysis = std::fs::read_to_string(out.join("analysis.json")).unwrap();
    assert!(analysis.contains("prior_blank"), "the analysis has the condition");

    // A resume adds nothing.
    study_with(&csv, ("gemma3-multi", &model), &out, &["--conditions", "prior_blank"]);
    assert_eq!(run_records(&out).len(), records.len());
}

/// Grad-CAM and grounding asked of a study with a multi-image row (issue 21): the multi-image
/// row gets each method's map per image, on each image's own grid, the shares of each method
/// summing to 1; its own trust and grounding hold the current image's parts (its occlusion
/// support, box figures and null edits). The single-image row is as before.
#[test]
fn a_multi_image_row_gets_every_method_split_per_image() {
    let scratch = Scratch::new("multi-image-checks");
    let csv = with_and_without_prior(&scratch);
    let model = fixture("multi-image-v1/gemma3-tiny-multi");
    let out = scratch.path().join("run");
    study_with(&csv, ("gemma3-multi", &model), &out, &["--gradcam", "--grounding", "--occlusion-grid", "2"]);
    let records = run_records(&out);
    let dir = RunDir::open(&out).unwrap();
    let image = |line: usize| records.iter().find(|r| r.csv_line == line && r.pass == Pass::Image).expect("an image-pass record");
    let (multi, single) = (image(2), image(3));
    assert!(multi.error.is_none() && multi.images.len() == 2, "{:?}", multi.error);
    let trust = multi.trust.as_ref().expect("the multi-image row's trust record");
    for method in [MapMethod::Gradcam, MapMethod::Occlusion] {
        let mut share = 0.0;
        for i in &multi.images {
            let found: Vec<_> = i.methods.iter().filter(|m| m.provenance.method == method).collect();
            assert_eq!(found.len(), 1, "one {method} map of the {} image: {:?}", i.role, i.methods);
            let m = found[0];
            let g = m.provenance.geometry;
            assert_eq!(m.values.shape, vec![g.h, g.w], "{method} of the {} image on its own grid", i.role);
            assert_eq!((g.image_w, g.image_h), (i.provenance.geometry.image_w, i.provenance.geometry.image_h), "on its own image");
            if method == MapMethod::Occlusion {
                assert_eq!((g.h, g.w), (2, 2), "the occlusion grid asked for");
            } else {
                assert_eq!((g.h, g.w), (i.provenance.geometry.h, i.provenance.geometry.w), "Grad-CAM on the attention grid");
            }
            assert!((0.0..=1.0).contains(&m.image_mass_share));
            share += m.image_mass_share;
            let sum: f32 = dir.read_f32(&m.values).unwrap().iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "{method} of the {} image sums to {sum}", i.role);
        }
        assert!((share - 1.0).abs() < 1e-6, "{method}: the images' shares sum to {share}");
    }
    let current = multi.images.iter().find(|i| i.role == "current").unwrap();
    let own_grid = current.provenance.geometry;
    let gradcam = trust.maps.iter().find(|m| m.provenance.method == MapMethod::Gradcam).expect("the current image's Grad-CAM");
    assert_eq!(gradcam.provenance.geometry, own_grid, "the record's Grad-CAM is the current image's part");
    assert!(trust.maps.iter().any(|m| m.provenance.method == MapMethod::Occlusion), "and its occlusion map: {trust:?}");
    let grounding = multi.grounding.as_ref().expect("the multi-image row's grounding");
    let occlusion = grounding.occlusion.as_ref().expect("the current image's occlusion support");
    assert_eq!((occlusion.grid, occlusion.support.len()), (2, 4));
    let grounded: Vec<MapMethod> = grounding.maps.iter().map(|m| m.method).collect();
    assert!(grounded.contains(&MapMethod::QueryToVisual) && grounded.contains(&MapMethod::Gradcam), "{grounded:?}");
    let own = &grounding.maps.iter().find(|m| m.method == MapMethod::QueryToVisual).unwrap().figures;
    assert!(own.occlusion.is_some(), "the current image's map against its occlusion support");
    assert_eq!(own.null_edits.len(), 2, "both null edits of the current image, the prior kept: {:?}", grounding.notes);

    assert!(single.trust.as_ref().is_some_and(|t| !t.maps.is_empty()), "the single-image row has its Grad-CAM map");
    assert!(single.grounding.as_ref().is_some_and(|g| !g.maps.is_empty()), "and its grounding figures");
    assert!(single.images.is_empty());

    let analysis: radlens_shared::record::Analysis =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    let roles = &analysis.models[0].images;
    assert_eq!(roles["prior"].methods.keys().map(String::as_str).collect::<Vec<_>>(), ["gradcam", "occlusion"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| `gradcam` |") && report.contains("| `occlusion` |"), "a report line per method");

    // Two shards merged: every method's map is copied with its record (the per-image ones and
    // the record's own).
    let flags = ["--gradcam", "--grounding", "--occlusion-grid", "2"];
    let shards: Vec<PathBuf> = (0..2).map(|i| scratch.path().join(format!("shard-{i}"))).collect();
    for (i, d) in shards.iter().enumerate() {
        let shard = format!("{i}/2");
        study_with(&csv, ("gemma3-multi", &model), d, &[flags.as_slice(), &["--shard", &shard]].concat());
    }
    let merged = scratch.path().join("merged");
    let images_dir = fixture("multi-image-v1/images");
    let (a, b) = (shards[0].to_str().unwrap(), shards[1].to_str().unwrap());
    let merge = radlens(&["merge", a, b, "--out", merged.to_str().unwrap(), "--images", images_dir.to_str().unwrap()]);
    assert!(merge.status.success(), "radlens merge: {}", String::from_utf8_lossy(&merge.stderr));
    let (merged_dir, merged_records) = (RunDir::open(&merged).unwrap(), run_records(&merged));
    for line in [2, 3] {
        let (x, y) = (by_line(&records, line), by_line(&merged_records, line));
        let maps = |r: &CaseRecord| -> Vec<radlens_shared::record::TensorRef> {
            let own = r.trust.iter().flat_map(|t| t.maps.iter().map(|m| m.values.clone()));
            own.chain(r.images.iter().flat_map(|i| i.methods.iter().map(|m| m.values.clone()))).collect()
        };
        let (mx, my) = (maps(x), maps(y));
        assert!(!mx.is_empty() && mx.len() == my.len(), "line {line}");
        for (tx, ty) in mx.iter().zip(&my) {
            assert_eq!(dir.read_f32(tx).unwrap(), merged_dir.read_f32(ty).unwrap(), "line {line}");
        }
    }
}

/// Deletion faithfulness and sinks asked of a multi-image row: the relative map split per
/// image, sinks on the current image's map, the deletion tests on the current image.
#[test]
fn a_multi_image_row_gets_relative_maps_sinks_and_deletion_on_its_current_image() {
    let scratch = Scratch::new("multi-image-relative");
    let csv = with_and_without_prior(&scratch);
    let model = fixture("multi-image-v1/gemma3-tiny-multi");
    let out = scratch.path().join("run");
    study_with(&csv, ("gemma3-multi", &model), &out, &["--sinks", "--faithfulness", "--deletion-percent", "25", "--random-draws", "1"]);
    let records = run_records(&out);
    let multi = records.iter().find(|r| r.csv_line == 2 && r.pass == Pass::Image).unwrap();
    assert!(multi.error.is_none(), "{:?}", multi.error);
    let share: f64 = multi
        .images
        .iter()
        .map(|i| {
            let r: Vec<_> = i.methods.iter().filter(|m| m.provenance.method == MapMethod::Relative).collect();
            assert_eq!(r.len(), 1, "one relative map of the {} image", i.role);
            assert_eq!(r[0].values.shape, vec![i.provenance.geometry.h, i.provenance.geometry.w]);
            r[0].image_mass_share
        })
        .sum();
    assert!((share - 1.0).abs() < 1e-6, "relative shares sum to {share}");
    let trust = multi.trust.as_ref().unwrap();
    assert!(trust.maps.iter().any(|m| m.provenance.method == MapMethod::Relative), "{trust:?}");
    assert!(trust.sinks.is_some(), "sinks on the current image's map");
    // Deletion on the current image, the prior intact: each of its maps at the size asked for.
    let deleted: Vec<(MapMethod, u32)> = trust.faithfulness.iter().map(|f| (f.method, f.k_percent)).collect();
    assert_eq!(deleted, [(MapMethod::QueryToVisual, 25), (MapMethod::Relative, 25)], "{:?}", trust.notes);
    let g = multi.images.iter().find(|i| i.role == "current").unwrap().provenance.geometry;
    assert_eq!(trust.faithfulness[0].cells, (g.h * g.w * 25).div_ceil(100).max(1), "25% of the current image's cells");
    assert!(trust.faithfulness.iter().all(|f| f.delta_top.is_finite() && f.delta_random.is_finite() && f.random_draws == 1));
}
