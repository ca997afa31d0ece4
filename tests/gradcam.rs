//! Grad-CAM on the tiny fixtures: candle's autograd gradient of the yes-minus-no margin against a
//! central finite difference of the same margin, and the map's shape and sign.

use candle_core::{DType, Device, Tensor};
use radlens::case::gradcam::{MarginTokens, gradcam, margin_from_activations, margin_gradient};
use radlens::case::multi_image::gradcam_multi;
use radlens::models::GradcamSite;
use radlens::models::checkpoint::llava_rad::PartOverrides;
use radlens::models::concat_features;
use radlens::models::loader::{Engine, load_engine};
use radlens::models::probe::NoProbe;
use radlens::models::processor::preprocess::load_image;
use radlens::models::processor::{ImageRole, PromptImage};

use crate::support::fixture;
use crate::support::parity::{Case, assert_close, flat};

fn engine(rel: &str) -> Engine {
    load_engine(&fixture(rel), &PartOverrides::default(), DType::F32, &Device::Cpu, radlens::models::linear::WeightFormat::Dense).unwrap()
}

/// A fixed pseudo-random direction (a 64-bit LCG), scaled to unit max-norm.
fn direction(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The engine's pixel input: `pixel_values`, except for Qwen2.5-VL, whose engine takes the
/// normalised image (`pixel_image`, `[3, H, W]`) and patchifies it itself.
fn model_input(case: &Case) -> Tensor {
    match case.tensors.get("pixel_image") {
        Some(image) => image.unsqueeze(0).unwrap(),
        None => case.t("pixel_values").clone(),
    }
}

fn margin_at(e: &Engine, ids: &[u32], acts: &Tensor, site: &GradcamSite, tokens: MarginTokens) -> f64 {
    let m = margin_from_activations(e.model.as_ref(), ids, acts, site, tokens).unwrap();
    f64::from(m.to_scalar::<f32>().unwrap())
}

/// `<grad, d>` from autograd against `(m(a + eps d) - m(a - eps d)) / 2 eps`, in f32, for four
/// random directions. eps = 1e-2 on activations of order 1 (entries of `d` in [-1, 1]): at
/// 3e-2 LLaVA-Rad's curvature already shows (1.7e-2), at 3e-3 f32 rounding of the margin does.
/// The error is relative to the larger of `|<grad, d>|` and its typical size for a random `d`,
/// `||grad|| rms(d)`: a direction nearly orthogonal to the gradient (Gemma3's seed 1 gives 2e-4
/// against a typical 1e-2) leaves only rounding noise to compare, which says nothing.
fn gradient_matches_finite_differences(e: &Engine, case: &Case) {
    let model = e.model.as_ref();
    let ids = case.ids("input_ids");
    let pixels = &model_input(case);
    let acts = model.gradcam_activations(pixels).unwrap();
    let site = model.gradcam_site(pixels).unwrap();
    // The split forward computes exactly what encode_image does.
    let split = model.features_from_gradcam_block(&acts, &site).unwrap();
    let whole = model.encode_image(pixels, &mut NoProbe).unwrap();
    assert_close(&format!("{}: features via the Grad-CAM block", case.name), &flat(&split), &flat(&whole), 1e-6);

    let mut cache = model.new_cache();
    let logits = model.prefill_from(&ids, 0, &whole, &mut cache, &mut NoProbe).unwrap().to_vec1::<f32>().unwrap();
    let yes = e.prompter.tokenizer().single_token_spellings("yes");
    let no = e.prompter.tokenizer().single_token_spellings("no");
    let tokens = MarginTokens::pick(&logits, &yes, &no).expect("the fixture's vocabulary spells yes and no");
    let mg = margin_gradient(model, &ids, &acts, &site, tokens).unwrap();
    assert!((mg.margin - f64::from(logits[tokens.yes as usize] - logits[tokens.no as usize])).abs() < 1e-5);

    let eps = 1e-2;
    let grad_norm = f64::from(mg.gradient.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap());
    for seed in 0..4 {
        let d = direction(acts.dims(), seed);
        let rms_d = f64::from(d.sqr().unwrap().mean_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap());
        let plus = margin_at(e, &ids, &(&acts + (&d * eps).unwrap()).unwrap(), &site, tokens);
        let minus = margin_at(e, &ids, &(&acts - (&d * eps).unwrap()).unwrap(), &site, tokens);
        let fd = (plus - minus) / (2.0 * eps);
        let ad = f64::from((mg.gradient.unsqueeze(0).unwrap() * &d).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap());
        let rel = (fd - ad).abs() / ad.abs().max(grad_norm * rms_d);
        eprintln!("{} seed {seed}: autograd {ad:.6e}, finite difference {fd:.6e}, relative error {rel:.2e}", case.name);
        assert!(rel < 2e-2, "{} direction {seed}: autograd {ad} vs finite difference {fd} (relative error {rel:.3e})", case.name);
    }
}

#[test]
fn llava_gradient_matches_finite_differences() {
    gradient_matches_finite_differences(&engine("reference-v1/llava-tiny"), &Case::load("llava-tiny", "case0"));
}

#[test]
fn gemma3_gradient_matches_finite_differences() {
    gradient_matches_finite_differences(&engine("reference-v1/gemma3-tiny"), &Case::load("gemma3-tiny", "case0"));
}

#[test]
fn llava_rad_gradient_matches_finite_differences() {
    let case = Case::load_from("llava-rad-tiny-v1/reference/llava-rad-tiny/case0", "llava-rad-tiny/case0");
    gradient_matches_finite_differences(&engine("llava-rad-tiny-v1/llava-rad-tiny"), &case);
}

#[test]
fn qwen25vl_gradient_matches_finite_differences() {
    let case = Case::load_from("qwen25vl-tiny-v1/reference/qwen25vl-tiny/case0", "qwen25vl-tiny/case0");
    gradient_matches_finite_differences(&engine("qwen25vl-tiny-v1/qwen25vl-tiny"), &case);
}

/// Qwen2.5-VL: the CAM lies on each image's own (non-square) token grid.
#[test]
fn qwen25vl_cams_have_each_images_grid() {
    let e = engine("qwen25vl-tiny-v1/qwen25vl-tiny");
    let yes = e.prompter.tokenizer().single_token_spellings("yes");
    let no = e.prompter.tokenizer().single_token_spellings("no");
    for name in ["case0", "case1"] {
        let case = Case::load_from(&format!("qwen25vl-tiny-v1/reference/qwen25vl-tiny/{name}"), name);
        let pixels = model_input(&case);
        let cam = gradcam(e.model.as_ref(), &case.ids("input_ids"), &pixels, &yes, &no).unwrap();
        let grid = e.model.image_grid(&pixels).unwrap();
        assert_eq!((cam.h, cam.w), grid, "{name}: the image's token grid");
        assert_ne!(cam.h, cam.w, "{name}: a non-square grid");
        assert!(cam.cells.iter().all(|&v| v >= 0.0 && v.is_finite()), "{name}: {:?}", cam.cells);
        assert!(cam.site.name.to_string().starts_with("vision.blocks.3.output"), "{name}: {}", cam.site.name);
    }
}

/// The CAM lies on the attention map's grid, is non-negative, and names its block.
#[test]
fn cams_have_the_attention_grid_and_are_non_negative() {
    for (rel, model, block) in
        [("reference-v1/llava-tiny", "llava-tiny", "vision.blocks."), ("reference-v1/gemma3-tiny", "gemma3-tiny", "vision.blocks.1.output")]
    {
        let e = engine(rel);
        let case = Case::load(model, "case1");
        let yes = e.prompter.tokenizer().single_token_spellings("yes");
        let no = e.prompter.tokenizer().single_token_spellings("no");
        let cam = gradcam(e.model.as_ref(), &case.ids("input_ids"), case.t("pixel_values"), &yes, &no).unwrap();
        let s = e.model.summary();
        assert_eq!((cam.h, cam.w), (s.grid_h, s.grid_w), "{model}: the attention map's grid");
        assert!(cam.cells.iter().all(|&v| v >= 0.0 && v.is_finite()), "{model}: {:?}", cam.cells);
        assert!(cam.cells.iter().sum::<f64>() > 0.0, "{model}: some patch raises the margin");
        assert!(cam.site.name.to_string().starts_with(block), "{model}: {}", cam.site.name);
    }
}

/// A prompt with one image: the multi-image Grad-CAM (issue 21: channel weights over every
/// image's patches, each image pooled on its own grid) is the single-image Grad-CAM.
#[test]
fn the_multi_image_gradcam_of_a_one_image_prompt_is_gradcam() {
    for (rel, model) in [("reference-v1/llava-tiny", "llava-tiny"), ("reference-v1/gemma3-tiny", "gemma3-tiny")] {
        let e = engine(rel);
        let case = Case::load(model, "case1");
        let yes = e.prompter.tokenizer().single_token_spellings("yes");
        let no = e.prompter.tokenizer().single_token_spellings("no");
        let (ids, pixels) = (case.ids("input_ids"), case.t("pixel_values"));
        let cam = gradcam(e.model.as_ref(), &ids, pixels, &yes, &no).unwrap();
        let features = e.model.encode_image(pixels, &mut NoProbe).unwrap();
        let multi = gradcam_multi(e.model.as_ref(), &ids, &[pixels], &features, &yes, &no).unwrap();
        assert_eq!((multi.grids.as_slice(), multi.site.name), ([(cam.h, cam.w)].as_slice(), cam.site.name), "{model}");
        let scale = cam.cells.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        for (k, (a, b)) in multi.cells[0].iter().zip(&cam.cells).enumerate() {
            assert!((a - b).abs() <= 1e-5 * scale, "{model} cell {k}: {a} multi vs {b}");
        }
        assert!((multi.margin - cam.margin).abs() < 1e-5, "{model}: margin {} vs {}", multi.margin, cam.margin);
    }
}

/// Two images in one prompt (issue 21): the margin's gradient at each image's Grad-CAM block,
/// summed over that image's patches, against a central difference of the margin when channel c
/// of every patch of that image moves by `s_c` (random `s`, the other image untouched):
/// `<sum_p g[p, .], s>`. Each image is checked on its own, so a gradient that never reached one
/// image, or reached the wrong one, fails (the channel weights are the sums' total over all
/// patches).
#[test]
fn each_images_gradient_in_a_two_image_prompt_matches_finite_differences() {
    let e = engine("multi-image-v1/gemma3-tiny-multi");
    let model = e.model.as_ref();
    let dir = fixture("multi-image-v1/images");
    let pixels: Vec<Tensor> = ["prior_rgb_140x128.png", "frontal_gray_96x120.png"]
        .iter()
        .map(|n| e.image_processor.preprocess(&load_image(&dir.join(n)).unwrap()).unwrap().to_tensor(&Device::Cpu).unwrap())
        .collect();
    let features: Vec<Tensor> = pixels.iter().map(|p| model.encode_image(p, &mut NoProbe).unwrap()).collect();
    // The map grid is the image's token grid (Gemma3 pools the tower's patches to it).
    let tokens_per_image = e.model.summary().grid_h * e.model.summary().grid_w;
    let request = [ImageRole::Prior, ImageRole::Current].map(|role| PromptImage { role, tokens: tokens_per_image });
    let prompt = e.prompter.encode_images("Has the effusion grown since the prior?", None, &request).unwrap();
    let ids = &prompt.prompt.input_ids;
    // Both in prompt order.
    let pixels: Vec<&Tensor> = prompt.order.iter().map(|&i| &pixels[i]).collect();
    let features = concat_features(&prompt.order.iter().map(|&i| features[i].clone()).collect::<Vec<_>>()).unwrap();
    let yes = e.prompter.tokenizer().single_token_spellings("yes");
    let no = e.prompter.tokenizer().single_token_spellings("no");
    let multi = gradcam_multi(model, ids, &pixels, &features, &yes, &no).unwrap();

    let mut cache = model.new_cache();
    let logits = model.prefill_from(ids, 0, &features, &mut cache, &mut NoProbe).unwrap().to_vec1::<f32>().unwrap();
    let tokens = MarginTokens::pick(&logits, &yes, &no).unwrap();
    let acts: Vec<Tensor> = pixels.iter().map(|p| model.gradcam_activations(p).unwrap()).collect();
    let sites: Vec<GradcamSite> = pixels.iter().map(|p| model.gradcam_site(p).unwrap()).collect();
    let margin_at = |acts: &[Tensor]| -> f64 {
        let parts: Vec<Tensor> = acts.iter().zip(&sites).map(|(a, s)| model.features_from_gradcam_block(a, s).unwrap()).collect();
        let mut cache = model.new_cache();
        let logits = model.prefill_from(ids, 0, &concat_features(&parts).unwrap(), &mut cache, &mut NoProbe).unwrap();
        f64::from(tokens.margin(&logits).unwrap().to_scalar::<f32>().unwrap())
    };
    assert!((margin_at(&acts) - multi.margin).abs() < 1e-5, "the split forward gives the margin");

    let eps = 1e-2;
    for (k, (a, site)) in acts.iter().zip(&sites).enumerate() {
        let (positions, channels) = (a.dim(1).unwrap(), a.dim(2).unwrap());
        let patches = site.patch_grid.0 * site.patch_grid.1;
        for seed in 0..3 {
            let s: Vec<f32> = direction(&[channels], 100 * k as u64 + seed).to_vec1().unwrap();
            // `s` on every patch position of image k (not on positions before them, e.g. CLS).
            let d: Vec<f32> = (0..positions).flat_map(|p| s.iter().map(move |&v| if p >= site.skip { v } else { 0.0 })).collect();
            let d = Tensor::from_vec(d, a.dims(), &Device::Cpu).unwrap();
            let moved = |sign: f64| -> Vec<Tensor> {
                acts.iter().enumerate().map(|(j, x)| if j == k { (x + (&d * (sign * eps)).unwrap()).unwrap() } else { x.clone() }).collect()
            };
            let fd = (margin_at(&moved(1.0)) - margin_at(&moved(-1.0))) / (2.0 * eps);
            let ad: f64 = multi.gradient_sums[k].iter().zip(&s).map(|(g, &v)| g * f64::from(v)).sum();
            let typical = multi.gradient_sums[k].iter().map(|g| g * g).sum::<f64>().sqrt() / (channels as f64).sqrt();
            let rel = (fd - ad).abs() / ad.abs().max(typical);
            eprintln!("image {k} seed {seed}: autograd {ad:.6e}, finite difference {fd:.6e}, relative error {rel:.2e} ({patches} patches)");
            assert!(rel < 2e-2, "image {k} direction {seed}: autograd {ad} vs finite difference {fd} (relative error {rel:.3e})");
        }
    }
    assert_eq!(multi.gradient_sums.len(), 2, "one gradient per image");
}
