//! `radlens bench --images N` (issue 21): several images per prompt on the mid-size presets that
//! take them, timed against the 1-image prompt of the same run; single-image presets refuse.
//! Figures are not checked (benchmarks, not timed tests): only that both rows and the ratios
//! are reported and consistent with the prompts.

use serde_json::Value;

use crate::support::radlens;

/// Cut to one text layer and one vision block so a debug build runs it in seconds.
const CUT: [&str; 8] = ["--text-layers", "1", "--vision-layers", "1", "--reps", "1", "--new-tokens", "2"];

fn bench(arch: &str, images: &str, json: bool) -> std::process::Output {
    let mut args = vec!["bench", "--arch", arch, "--images", images];
    args.extend(CUT);
    if json {
        args.push("--json");
    }
    radlens(&args)
}

/// Two images on the mid-size Gemma3: the 1-image baseline and the 2-image row, the ratio lines,
/// and the prompt lengths that follow from 256 image tokens per image.
#[test]
fn bench_reports_two_images_against_the_one_image_baseline() {
    let out = bench("gemma3", "2", false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 image: ") && text.contains("(current)"), "{text}");
    assert!(text.contains("2 images: ") && text.contains("(current, prior)"), "{text}");
    let header = text.lines().find(|l| l.starts_with("figure")).expect("the table's header");
    assert!(header.contains("1 image") && header.contains("2 images") && header.contains("ratio"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("2 images: prefill ") && l.ends_with("x the 1-image prefill")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("2 images: decode ") && l.ends_with("x the 1-image decode")), "{text}");
    assert!(text.contains("cut to 1 text and 1 vision layers"), "{text}");

    let out = bench("gemma3", "2", true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (b, m) = (&r["baseline"], &r["measured"]);
    assert_eq!((b["images"].as_u64(), m["images"].as_u64()), (Some(1), Some(2)));
    assert_eq!((b["image_tokens"].as_u64(), m["image_tokens"].as_u64()), (Some(256), Some(512)));
    // Each further image adds its tokens and its label/boi/eoi/separators (4 + 4 ids).
    assert_eq!(m["prompt_tokens"].as_u64().unwrap() - b["prompt_tokens"].as_u64().unwrap(), 256 + 8);
    let ratios: Vec<(String, Option<f64>)> = serde_json::from_value(r["ratios"].clone()).unwrap();
    let prefill = ratios.iter().find(|(n, _)| n == "prefill").and_then(|(_, x)| *x).expect("a prefill ratio");
    let expected = m["prefill_ms"].as_f64().unwrap() / b["prefill_ms"].as_f64().unwrap();
    assert!((prefill - expected).abs() < 1e-9 * expected.max(1.0), "{prefill} vs {expected}");
    assert_eq!(m["ids_same_with_and_without_capture"], true);
}

/// MAIRA-2's mid-size preset places current, lateral, prior and reports the 1369-token images.
#[test]
fn bench_times_three_maira2_images() {
    let out = bench("maira2", "3", true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["measured"]["roles"], serde_json::json!(["current", "lateral", "prior"]));
    assert_eq!((r["baseline"]["image_tokens"].as_u64(), r["measured"]["image_tokens"].as_u64()), (Some(1369), Some(3 * 1369)));
}

/// Presets that take one image refuse `--images 2` with an input error naming the preset.
#[test]
fn single_image_presets_refuse_several_images() {
    for (arch, extra) in [("llava", None), ("llava-rad", Some("--random-weights"))] {
        let mut args = vec!["bench", "--arch", arch, "--images", "2"];
        args.extend(extra);
        let out = radlens(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--images") && err.contains(&format!("{arch} takes 1 image per prompt, not 2")), "{err}");
    }
    let out = radlens(&["bench", "--arch", "gemma3", "--images", "4"]);
    assert_eq!(out.status.code(), Some(2));
}
