//! The occlusion reference map (grounding spec G1) on the tiny fixtures: the batched, prefix-
//! reusing computation equals a slow one-full-forward-per-cell reference; a cell that is
//! already the fill value has no support; a grid that does not fit the input is refused.

use candle_core::{DType, Device, Tensor};
use radlens::case::gradcam::MarginTokens;
use radlens::case::occlusion::{OccludedImages, OcclusionSettings, occlusion_map};
use radlens::case::trust::delete_cells;
use radlens::models::checkpoint::llava_rad::PartOverrides;
use radlens::models::loader::{Engine, load_engine};
use radlens::models::probe::NoProbe;

use radlens_shared::grounding::{NullEdit, cascade_steps};

use crate::support::fixture;
use crate::support::parity::Case;

fn engine(rel: &str) -> Engine {
    load_engine(&fixture(rel), &PartOverrides::default(), DType::F32, &Device::Cpu, radlens::models::linear::WeightFormat::Dense).unwrap()
}

/// The margin of a whole prompt forward from scratch on `pixels`.
fn full_margin(e: &Engine, ids: &[u32], pixels: &Tensor, tokens: MarginTokens) -> f64 {
    let model = e.model.as_ref();
    let features = model.encode_image(pixels, &mut NoProbe).unwrap();
    let mut cache = model.new_cache();
    let l = model.prefill_from(ids, 0, &features, &mut cache, &mut NoProbe).unwrap().to_vec1::<f32>().unwrap();
    f64::from(l[tokens.yes as usize] - l[tokens.no as usize])
}

fn matches_the_slow_reference(e: &Engine, case: &Case, grid: usize, batch: usize) {
    let model = e.model.as_ref();
    let ids = case.ids("input_ids");
    let pixels = case.t("pixel_values");
    let yes = e.prompter.tokenizer().single_token_spellings("yes");
    let no = e.prompter.tokenizer().single_token_spellings("no");
    let features = model.encode_image(pixels, &mut NoProbe).unwrap();
    let occluded = OccludedImages::encode(model, pixels, OcclusionSettings { grid, batch }).unwrap();
    let map = occlusion_map(model, &ids, model.summary().image_token_id, &features, &occluded, &yes, &no).unwrap();
    assert_eq!(map.support.len(), grid * grid);

    let mut cache = model.new_cache();
    let logits = model.prefill_from(&ids, 0, &features, &mut cache, &mut NoProbe).unwrap().to_vec1::<f32>().unwrap();
    let tokens = MarginTokens::pick(&logits, &yes, &no).unwrap();
    let m = full_margin(e, &ids, pixels, tokens);
    assert!((map.margin - m).abs() < 1e-5, "{}: margin {} vs {m}", case.name, map.margin);
    let s = if m >= 0.0 { 1.0 } else { -1.0 };
    let mut worst = 0f64;
    for c in 0..grid * grid {
        let mc = full_margin(e, &ids, &delete_cells(pixels, grid, grid, &[c]).unwrap(), tokens);
        let want = s * (m - mc);
        worst = worst.max((map.support[c] - want).abs());
        assert!((map.support[c] - want).abs() < 1e-5, "{} cell {c}: support {} vs the slow reference {want}", case.name, map.support[c]);
    }
    eprintln!("{}: {grid}x{grid} occlusion, batch {batch}: worst |support - reference| {worst:.2e}", case.name);
    assert!(map.support.iter().any(|v| v.abs() > 1e-6), "{}: some cell moves the margin", case.name);
}

#[test]
fn llava_occlusion_equals_one_forward_per_cell() {
    matches_the_slow_reference(&engine("reference-v1/llava-tiny"), &Case::load("llava-tiny", "case0"), 4, 5);
}

#[test]
fn gemma3_occlusion_equals_one_forward_per_cell() {
    matches_the_slow_reference(&engine("reference-v1/gemma3-tiny"), &Case::load("gemma3-tiny", "case0"), 4, 3);
}

#[test]
fn llava_rad_occlusion_equals_one_forward_per_cell() {
    let case = Case::load_from("llava-rad-tiny-v1/reference/llava-rad-tiny/case0", "llava-rad-tiny/case0");
    matches_the_slow_reference(&engine("llava-rad-tiny-v1/llava-rad-tiny"), &case, 3, 4);
}

/// Planted: cell 5 of a 4x4 grid is made of the fill value itself (per channel, the mean of the
/// rest of the input, which is then the mean of the whole input), so hiding it changes nothing.
#[test]
fn a_cell_that_is_already_the_fill_has_no_support() {
    let e = engine("reference-v1/llava-tiny");
    let case = Case::load("llava-tiny", "case0");
    let pixels = case.t("pixel_values");
    let (_, channels, side, _) = pixels.dims4().unwrap();
    let (g, cell) = (4, 5);
    let (r, c) = (cell / g, cell % g);
    let inside = |y: usize, x: usize| (r * side / g..(r + 1) * side / g).contains(&y) && (c * side / g..(c + 1) * side / g).contains(&x);
    let mut v = pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for ch in 0..channels {
        let plane = &mut v[ch * side * side..(ch + 1) * side * side];
        let (mut sum, mut n) = (0f64, 0usize);
        for y in 0..side {
            for x in 0..side {
                if !inside(y, x) {
                    sum += f64::from(plane[y * side + x]);
                    n += 1;
                }
            }
        }
        let fill = (sum / n as f64) as f32;
        for y in 0..side {
            for x in 0..side {
                if inside(y, x) {
                    plane[y * side + x] = fill;
                }
            }
        }
    }
    let planted = Tensor::from_vec(v, pixels.dims(), &Device::Cpu).unwrap();
    let model = e.model.as_ref();
    let yes = e.prompter.tokenizer().single_token_spellings("yes");
    let no = e.prompter.tokenizer().single_token_spellings("no");
    let features = model.encode_image(&planted, &mut NoProbe).unwrap();
    let occluded = OccludedImages::encode(model, &planted, OcclusionSettings { grid: g, batch: 16 }).unwrap();
    let map = occlusion_map(model, &case.ids("input_ids"), model.summary().image_token_id, &features, &occluded, &yes, &no).unwrap();
    assert!(map.support[cell].abs() < 1e-5, "support at the constant cell: {}", map.support[cell]);
    let moved = map.support.iter().enumerate().filter(|(i, v)| *i != cell && v.abs() > 1e-4).count();
    assert!(moved > 0, "the other cells do move the margin: {:?}", map.support);
}

#[test]
fn a_grid_larger_than_the_input_is_refused_with_both_sizes() {
    let e = engine("reference-v1/llava-tiny");
    let case = Case::load("llava-tiny", "case0");
    let pixels = case.t("pixel_values");
    let side = pixels.dim(3).unwrap();
    let err = OccludedImages::encode(e.model.as_ref(), pixels, OcclusionSettings { grid: side + 1, batch: 4 }).err().unwrap().to_string();
    assert!(err.contains(&format!("{}", side + 1)) && err.contains(&format!("{side} x {side}")), "{err}");
}

/// `radlens probe --occlusion --box`: the support map, every map's figures, and bad input as
/// exit-2 errors that name the flag.
#[test]
fn probe_prints_the_grounding_of_every_map_and_refuses_bad_boxes() {
    let image = crate::support::fixture("reference-v1/images/img_b_rgb_300x240.png").display().to_string();
    let model = crate::support::fixture("reference-v1/llava-tiny").display().to_string();
    let base = ["probe", "--model", &model, "--image", &image, "--question", "Is there an effusion?", "--max-new-tokens", "1"];
    let run = |extra: &[&str]| crate::support::radlens(&[&base[..], extra].concat());
    let out = run(&["--occlusion", "--occlusion-grid", "4", "--box", "40,30,120,90", "--gradcam", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = &v["grounding"];
    assert_eq!(g["occlusion"]["support"].as_array().unwrap().len(), 16);
    let methods: Vec<&str> = g["maps"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["query_to_visual", "gradcam", "occlusion"]);
    for m in g["maps"].as_array().unwrap() {
        assert!(m["box_controls"]["n_controls"].as_u64().is_some() && m["box_score"]["box_f1"].as_f64().is_some(), "{m}");
        assert_eq!(m["occlusion"].is_object(), m["method"] != "occlusion", "{m}");
    }
    let trust_methods: Vec<&str> =
        v["trust"]["maps"].as_array().unwrap().iter().map(|m| m["provenance"]["method"].as_str().unwrap()).collect();
    assert_eq!(trust_methods, ["gradcam", "occlusion"], "the occlusion map is shown with the others");

    for (extra, flag) in [
        (vec!["--occlusion", "--box", "250,200,100,100"], "--box"),
        (vec!["--occlusion", "--box", "1,2,0,3"], "--box"),
        (vec!["--occlusion", "--occlusion-grid", "60"], "--occlusion-grid"),
    ] {
        let out = run(&extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(flag), "{extra:?}: {err}");
    }
}

/// `radlens study --grounding`: every image-pass record carries its occlusion support and each
/// map's figures, boxed rows their box controls and score; the occlusion map is stored with the
/// other maps; the settings are in the manifest and a rerun resumes.
#[test]
fn study_grounding_reaches_records_manifest_and_resume() {
    let scratch = crate::support::Scratch::new("study-grounding");
    let models = radlens::commands::demo::write_demo_models(&scratch.path().join("models")).unwrap();
    let data = crate::support::workspace_root().join("static/demo");
    let csv = std::fs::read_to_string(data.join("demo-study.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let mut rows: Vec<String> =
        lines.filter(|l| l.starts_with("00001369_000,") || l.starts_with("00021397_000,")).map(str::to_owned).collect();
    // A box off the 512 x 512 image: the row keeps its answer and maps, without box figures.
    let off = rows.iter().position(|r| r.starts_with("00001369_000,") && r.contains(",paraphrase-1,")).unwrap();
    rows[off] = rows[off].replace("168.5,138,277,193.5", "400,300,200,100");
    let csv = scratch.write("study.csv", &format!("{header}\n{}\n", rows.join("\n")));
    let out = scratch.path().join("run");
    let mut args: Vec<String> = ["study", "--csv", &csv.display().to_string(), "--images", &data.join("cxr").display().to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--out", &out.display().to_string(), "--resamples", "50", "--max-new-tokens", "2", "--text-only-pass"].map(String::from));
    args.extend(["--grounding", "--occlusion-grid", "4", "--occlusion-batch", "5"].map(String::from));
    for (name, dir) in &models {
        args.extend(["--model".to_string(), format!("{name}={}", dir.display())]);
    }
    let without_randomization: Vec<String> = args.clone();
    args.extend(["--randomization", "2"].map(String::from));
    // A grid finer than a model's input is refused before any row runs, naming the flag, and
    // leaves nothing a corrected run would clash with.
    let too_fine: Vec<String> = args.iter().map(|a| if a == "4" { "64".to_string() } else { a.clone() }).collect();
    let refused = crate::support::radlens(&too_fine.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("--occlusion-grid") && err.contains("64 does not fit"), "{err}");
    assert!(!out.join("manifest.json").exists());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = crate::support::radlens(&refs);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let records = crate::support::run_records(&out);
    let mut boxed = 0;
    for r in &records {
        match r.pass {
            radlens_shared::record::Pass::Image if r.error.is_none() => {
                let g = r.grounding.as_ref().unwrap_or_else(|| panic!("{}: no grounding", r.sample_id));
                assert_eq!(g.occlusion.as_ref().unwrap().support.len(), 16, "{}", r.sample_id);
                let own = g.of(r.map.as_ref().unwrap().provenance.method).expect("the record's own map is grounded");
                assert!(own.occlusion.is_some());
                if r.sample_id == "00001369_000#1" {
                    assert!(own.box_controls.is_none() && own.box_score.is_none(), "no box figures for a box off the image");
                    assert!(
                        g.notes.iter().any(|n| n.contains("is not inside the 512x512 image") && n.contains("CSV line")),
                        "{:?}",
                        g.notes
                    );
                } else {
                    assert_eq!(own.box_controls.is_some(), r.roi.is_some(), "{}", r.sample_id);
                }
                let edits: Vec<NullEdit> = own.null_edits.iter().map(|e| e.edit).collect();
                assert_eq!(edits, NullEdit::ALL, "{}: both null edits on the record's own map", r.sample_id);
                boxed += usize::from(r.roi.is_some());
                if g.occlusion_map_expected() {
                    let t = r.trust.as_ref().expect("the occlusion map is stored with the trust maps");
                    assert!(t.map(radlens_shared::fusion::MapMethod::Occlusion).is_some(), "{}", r.sample_id);
                }
            }
            _ => assert!(r.grounding.is_none(), "{} {:?}: no grounding without an image map", r.sample_id, r.pass),
        }
    }
    assert!(boxed > 0, "the boxed study was run");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["capture"]["grounding"]["occlusion_grid"], 4);
    // The analysis has a grounding row per model and map method, and the report leads with it.
    let analysis: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("analysis.json")).unwrap()).unwrap();
    for m in analysis["models"].as_array().unwrap() {
        let rows = m["grounding"].as_array().unwrap_or_else(|| panic!("{}: no grounding summary", m["model"]));
        let own = rows.iter().find(|g| g["method"] == "query_to_visual").expect("the attention map's row");
        assert!(own["occlusion_topk_overlap"]["estimate"].is_number(), "{own}");
        assert!(own["boxed_records"].as_u64().unwrap() > 0 && own["box_f1"]["estimate"].is_number(), "{own}");
    }
    // G4 per model and edit; G5 per model, from randomization.json.
    assert_eq!(manifest["randomization"]["samples"], 2);
    let checks: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("randomization.json")).unwrap()).unwrap();
    assert_eq!(checks["models"].as_array().unwrap().len(), models.len());
    for m in analysis["models"].as_array().unwrap() {
        let edits: Vec<&str> = m["null_edits"].as_array().unwrap().iter().map(|e| e["edit"].as_str().unwrap()).collect();
        assert_eq!(edits, ["contrast90", "jpeg90"], "{}", m["model"]);
        for e in m["null_edits"].as_array().unwrap() {
            assert!(e["answer_change_rate"]["estimate"].is_number() && e["js_distance"]["mean"].as_f64().unwrap() > 0.0, "{e}");
            assert!(e["studies"].as_u64().unwrap() >= 1, "studies with several variants have a paraphrase-to-null ratio: {e}");
        }
        // The model's flagged studies are those whose own figures say so.
        for e in m["null_edits"].as_array().unwrap() {
            let per_study: Vec<&serde_json::Value> = analysis["studies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["model"] == m["model"])
                .flat_map(|s| {
                    s["null_edits"].as_array().unwrap().iter().filter(|n| n["edit"] == e["edit"] && n["paraphrase_to_null"].is_number())
                })
                .collect();
            assert_eq!(e["studies"].as_u64().unwrap() as usize, per_study.len(), "{e}");
            let flagged = per_study.iter().filter(|n| n["flagged"] == true).count();
            assert_eq!(e["flagged_studies"].as_u64().unwrap() as usize, flagged, "{e}");
            assert!(per_study.iter().all(|n| (n["paraphrase_to_null"].as_f64().unwrap() < 1.0) == (n["flagged"] == true)));
        }
        let r = &m["randomization"];
        assert_eq!(r["inputs"], 2, "{}", m["model"]);
        let layers = r["curve"]["lm_layers"].as_u64().unwrap() as u32;
        assert_eq!(r["curve"]["points"].as_array().unwrap().len(), cascade_steps(layers).len());
        assert!(r["insensitive"].is_boolean(), "{r}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Can the maps be trusted? Grounding"), "the report has the grounding section");
    assert!(report.contains("**Null edits**") && report.contains("**Weight randomisation**"), "{report}");
    assert!(report.contains("(plots/randomization_curve.png)") && out.join("plots/randomization_curve.png").is_file());
    let again = crate::support::radlens(&refs);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 records written"), "{}", String::from_utf8_lossy(&again.stderr));
    let unchanged: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("randomization.json")).unwrap()).unwrap();
    assert_eq!(unchanged, checks, "a finished check is not run again");
    // A resume without the flag keeps the manifest's check.
    let refs: Vec<&str> = without_randomization.iter().map(String::as_str).collect();
    assert!(crate::support::radlens(&refs).status.success());
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["randomization"]["samples"], 2);
}

/// G2's control boxes on the crops the real preprocessors make of odd-sized images (LLaVA's
/// centre crop, Gemma3's stretch of the whole image, LLaVA-Rad's centre crop of a portrait
/// image), against the spec's enumeration written out here: same size, strides of half the box,
/// from the crop's rounded-up corner, inside the crop, no overlap with the box, a non-empty mask
/// (`geometry::bbox_mask`), `y` outer and `x` inner.
#[test]
fn control_boxes_follow_the_spec_on_each_models_crop() {
    use image::DynamicImage;
    use radlens_shared::geometry::{MapGeometry, PixelBox, bbox_mask};
    use radlens_shared::grounding::control_boxes;
    for (rel, (w, h), whole_image) in [
        ("reference-v1/llava-tiny", (301, 229), false),
        ("reference-v1/gemma3-tiny", (301, 229), true),
        ("llava-rad-tiny-v1/llava-rad-tiny", (229, 301), false),
    ] {
        let e = engine(rel);
        let pre = e.image_processor.preprocess(&DynamicImage::new_luma8(w, h)).unwrap();
        let s = e.model.summary();
        let g = MapGeometry { h: s.grid_h, w: s.grid_w, crop: pre.crop, image_w: w, image_h: h };
        let c = g.crop;
        assert_eq!((c.x0, c.y0, c.x1, c.y1) == (0.0, 0.0, f64::from(w), f64::from(h)), whole_image, "{rel}: crop {c:?}");
        let roi = PixelBox::from_xywh(c.x0.ceil() + 17.0, c.y0.ceil() + 9.0, 41.0, 33.0).unwrap();
        let (bw, bh) = (41.0, 33.0);
        let (sx, sy) = ((bw / 2.0f64).floor().max(1.0), (bh / 2.0f64).floor().max(1.0));
        let mut want = Vec::new();
        let mut y = c.y0.ceil();
        while y + bh <= c.y1.floor() {
            let mut x = c.x0.ceil();
            while x + bw <= c.x1.floor() {
                let b = PixelBox { x0: x, y0: y, x1: x + bw, y1: y + bh };
                let overlap = (b.x1.min(roi.x1) - b.x0.max(roi.x0)).max(0.0) * (b.y1.min(roi.y1) - b.y0.max(roi.y0)).max(0.0);
                if overlap == 0.0 && bbox_mask(g.h, g.w, &c, &b).iter().any(|&m| m) {
                    want.push(b);
                }
                x += sx;
            }
            y += sy;
        }
        let got = control_boxes(&g, &roi).unwrap();
        assert!(!want.is_empty(), "{rel}: the crop leaves room for controls");
        assert_eq!(got, want, "{rel}: crop {c:?}");
    }
}
