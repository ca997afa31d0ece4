//! A synthetic run directory, by hand: 2 models x 3 studies x 3 variants (original, synonym,
//! negated), text-only records for model A, one error record (model B), one duplicate record,
//! small attention maps and 64x64 images. The expected numbers in the tests are worked out by
//! hand in the comments of [`answers`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use radlens_shared::AttentionMap;
use radlens_shared::answer::Answer::{self, No, Unknown, Yes};
use radlens_shared::fusion::{HeadFusion, LayerRange, MapMethod, MapProvenance, QueryMode};
use radlens_shared::geometry::{MapGeometry, PixelBox, bbox_mask};
use radlens_shared::metrics::MapMetrics;
use radlens_shared::record::{
    BootstrapSettings, CaptureSettings, CaseError, CaseRecord, ErrorStage, Latency, MapRecord, ModelInfo, Pass, RunManifest,
    SCHEMA_VERSION, StudySource,
};
use radlens_shared::roi::roi_metrics;

use crate::study::run_dir::{AttentionFile, RunDir, RunWriter};

pub const A: &str = "model-a";
pub const B: &str = "model-b";
pub const STUDIES: [&str; 3] = ["s1", "s2", "s3"];
const IMAGE: u32 = 64;

/// A fresh, empty folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("radlens-study-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn manifest(seed: u64) -> RunManifest {
    let model = |name: &str, grid: usize| ModelInfo {
        name: name.to_owned(),
        architecture: "llava".to_owned(),
        dtype: "f32".to_owned(),
        quantization: "none".to_owned(),
        device: "cpu".to_owned(),
        num_layers: 4,
        num_heads: 2,
        grid_h: grid,
        grid_w: grid,
        config_sha256: "0".repeat(64),
        weights_fingerprint: "0".repeat(64),
        random_weights: true,
        purpose: None,
    };
    RunManifest {
        schema_version: SCHEMA_VERSION,
        run_id: "fixture".to_owned(),
        created_at: "2025-01-01T00:00:00Z".to_owned(),
        updated_at: "2025-01-01T00:00:00Z".to_owned(),
        radlens_version: "0.1.0".to_owned(),
        arguments: Vec::new(),
        study: StudySource { csv_name: "study.csv".to_owned(), csv_sha256: "0".repeat(64), rows: 9, studies: 3, planned_rows: 9 },
        models: vec![model(A, 2), model(B, 4)],
        capture: CaptureSettings {
            layer_range: LayerRange::LastQuarter,
            head_fusion: HeadFusion::Mean,
            query_mode: QueryMode::Query,
            max_new_tokens: 8,
            common_grid: 4,
            text_only_pass: true,
            conditions: Vec::new(),
            trust: None,
            grounding: None,
        },
        bootstrap: BootstrapSettings { resamples: 300, seed, unit: "study".to_owned() },
        shard: None,
        n_studies: None,
        fingerprint: "fixture".to_owned(),
        randomization: None,
        near_tie_eps: None,
    }
}

/// (strategy, polarity) of variants 0, 1, 2.
pub const VARIANTS: [(&str, i8); 3] = [("original", 1), ("synonym", 1), ("negation", -1)];
/// The truth of each study's base question; a negated variant's truth is its inverse.
pub const BASE_TRUTH: [Answer; 3] = [Yes, No, Yes];

/// Answers as asked, `[study][variant]`; `None` = an error record.
///
/// Model A (truths s1 yes,yes,no; s2 no,no,yes; s3 yes,yes,no):
/// - s1 yes,yes,no: 3 correct, adjusted yes,yes,yes: consistent, 0 flips
/// - s2 no,yes,yes: 2 correct (v1 wrong), adjusted no,yes,no: 1 flip (synonym)
/// - s3 yes,yes,yes: 2 correct (v2 wrong), adjusted yes,yes,no: 1 flip (negation)
///
/// => accuracy 7/9, flip rate 2/6, full consistency 1/3,
/// cs_1 = 7/9, cs_2 = (1 + 1/3 + 1/3)/3 = 5/9, cs_3 = (1 + 0 + 0)/3 = 1/3.
///
/// Model B (s3 v1 is an error):
/// - s1 yes,no,no: 2 correct, adjusted yes,no,yes: 1 flip (synonym)
/// - s2 no,no,yes: 3 correct, adjusted no,no,no: consistent
/// - s3 unknown,-,yes: 0 correct, adjusted unknown,-,no: 1 flip (negation)
///
/// => accuracy 5/8, flip rate 2/5, full consistency 1/3,
/// cs_1 = (2/3 + 1 + 0)/3 = 5/9, cs_2 = (1/3 + 1 + 0)/3 = 4/9, cs_3 = (0 + 1)/2 = 1/2.
pub fn answers(model: &str) -> [[Option<Answer>; 3]; 3] {
    if model == A {
        [[Some(Yes), Some(Yes), Some(No)], [Some(No), Some(Yes), Some(Yes)], [Some(Yes), Some(Yes), Some(Yes)]]
    } else {
        [[Some(Yes), Some(No), Some(No)], [Some(No), Some(No), Some(Yes)], [Some(Unknown), None, Some(Yes)]]
    }
}

/// Model A's text-only answers: s1 as with the image (not image-reliant, consistent: the
/// dangerous quadrant); s2 v0 changes (reliant, inconsistent); s3 none change (inconsistent,
/// not reliant). Image reliance 1/9; text-only accuracy 3 + 1 + 2 = 6/9.
pub const BLANK_A: [[Answer; 3]; 3] = [[Yes, Yes, No], [Yes, Yes, Yes], [Yes, Yes, Yes]];

/// The raw map of a row. Model A (2x2, whole image): s1 all [4,1,1,1] (identical: map
/// consistency 1); s2 a different peak per variant; s3 uniform. Model B (4x4, whole image):
/// s1 and s3 are model A's maps spread evenly over the 2x2 blocks (cross-model JS 0 on the
/// common grid), s2 peaks in the bottom-right cell.
pub fn raw_map(model: &str, study: usize, variant: usize) -> (usize, Vec<f32>) {
    let a: Vec<f32> = match study {
        0 => vec![4.0, 1.0, 1.0, 1.0],
        1 => {
            let mut v = vec![1.0; 4];
            v[variant] = 4.0;
            v
        }
        _ => vec![1.0; 4],
    };
    if model == A {
        return (2, a);
    }
    if study == 1 {
        let mut v = vec![1.0; 16];
        v[15] = 9.0;
        return (4, v);
    }
    let mut v = vec![0.0; 16];
    for r in 0..4 {
        for c in 0..4 {
            v[r * 4 + c] = a[(r / 2) * 2 + c / 2] / 4.0;
        }
    }
    (4, v)
}

/// Study s1 has a radiologist box over the top-left quadrant.
pub fn roi(study: usize) -> Option<PixelBox> {
    (study == 0).then(|| PixelBox::new(0.0, 0.0, 32.0, 32.0).unwrap())
}

pub fn record(study: usize, variant: usize, model: &str, pass: Pass, answer: Option<Answer>, map: Option<MapRecord>) -> CaseRecord {
    let (strategy, polarity) = VARIANTS[variant];
    let truth = BASE_TRUTH[study].with_polarity(polarity);
    let id = STUDIES[study];
    CaseRecord {
        schema_version: SCHEMA_VERSION,
        sample_id: format!("{id}#{variant}"),
        study_id: id.to_owned(),
        subject_id: None,
        csv_line: 2 + study * 3 + variant,
        variant_index: variant as u32,
        strategy: strategy.to_owned(),
        polarity,
        finding: Some(if study == 1 { "pneumothorax" } else { "effusion" }.to_owned()),
        model: model.to_owned(),
        pass,
        image: format!("{id}.png"),
        question: format!("Is there finding {variant} in {id}?"),
        ground_truth: Some(truth),
        roi: roi(study),
        confound: None,
        answer_text: answer.map(|a| format!("{a}.")),
        parsed_answer: answer,
        correct: answer.map(|a| a == truth),
        yes_no_margin: answer.filter(|_| model == A).map(|a| if a == Yes { 2.0 + variant as f64 } else { -2.0 }),
        latency: Latency {
            preprocess_ms: 1.0,
            image_encode_ms: if variant == 0 { 20.0 } else { 0.0 },
            prefill_ms: 30.0 + study as f64,
            decode_ms: 50.0 + variant as f64,
            capture_ms: 5.0,
            total_ms: 106.0 + study as f64 + variant as f64,
        },
        map,
        error: answer.is_none().then(|| CaseError { stage: ErrorStage::Inference, message: "out of memory".to_owned() }),
        trust: None,
        grounding: None,
        condition: None,
        metadata: Default::default(),
        images: Vec::new(),
    }
}

/// Writes the fixture run directory (and its images) and returns (run dir, images dir).
pub fn write_run(tag: &str, seed: u64) -> (RunDir, PathBuf) {
    let root = temp_dir(tag);
    let dir = RunDir::create(&root.join("run")).unwrap();
    dir.write_manifest(&manifest(seed)).unwrap();
    let mut writer = RunWriter::open(&dir).unwrap();
    for model in [A, B] {
        let mut store = AttentionFile::open(&dir, model).unwrap();
        for (s, row) in answers(model).iter().enumerate() {
            for (v, answer) in row.iter().enumerate() {
                let map = answer.map(|_| {
                    let (g, values) = raw_map(model, s, v);
                    let t = store.append(&values, vec![g, g]).unwrap();
                    store.flush().unwrap();
                    let m = AttentionMap::new(g, g, values.iter().map(|&x| f64::from(x)).collect()).unwrap();
                    let p = m.normalized().unwrap();
                    let crop = PixelBox::image(IMAGE, IMAGE).unwrap();
                    MapRecord {
                        provenance: MapProvenance {
                            model: model.to_owned(),
                            method: MapMethod::QueryToVisual,
                            layer_range: LayerRange::LastQuarter,
                            layers: vec![3],
                            head_fusion: HeadFusion::Mean,
                            query_mode: QueryMode::Query,
                            query_positions: vec![10],
                            layers_without_image: vec![],
                            geometry: MapGeometry { h: g, w: g, crop, image_w: IMAGE, image_h: IMAGE },
                            site: None,
                            fallback_reason: None,
                        },
                        image_share: 0.25 + 0.1 * s as f64,
                        metrics: MapMetrics::of(&m).unwrap(),
                        roi: roi(s).and_then(|b| roi_metrics(&p, &bbox_mask(g, g, &crop, &b)).unwrap()),
                        head_rows: t.clone(),
                        values: t,
                    }
                });
                writer.append(&record(s, v, model, Pass::Image, *answer, map)).unwrap();
                if model == A {
                    writer.append(&record(s, v, model, Pass::BlankImage, Some(BLANK_A[s][v]), None)).unwrap();
                }
            }
        }
    }
    // A duplicate of an existing key with another answer: the first must win.
    writer.append(&record(0, 0, A, Pass::Image, Some(No), None)).unwrap();

    let images = root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (i, id) in STUDIES.iter().enumerate() {
        let img = image::GrayImage::from_fn(IMAGE, IMAGE, |x, y| image::Luma([((x + y) * 3 / 2 + 20 * i as u32).min(255) as u8]));
        img.save(images.join(format!("{id}.png"))).unwrap();
    }
    (dir, images)
}
