//! End-to-end tests. One binary; one module per capability.

mod support;

/// `radlens metrics` on map files: golden agreement, output shape, errors and exit codes.
mod cli_metrics;

/// The LLaVA engine against transformers' outputs on the tiny llava-hf fixture.
mod parity_llava;

/// The Gemma3 (MedGemma) engine against transformers' outputs on the tiny gemma3 fixture.
mod parity_gemma3;

/// The Qwen2.5-VL engine (dynamic resolution, window attention, mrope) against transformers on
/// the tiny qwen2.5-vl fixture (or the one `RADLENS_QWEN25VL_FIXTURE` names).
mod parity_qwen25vl;

/// Several images per prompt: Gemma3 (one bidirectional block per image) and MAIRA-2 (RAD-DINO,
/// 4-layer projector, linear RoPE) against transformers on `fixtures/multi-image-v1` (or the one
/// `RADLENS_MULTI_IMAGE_FIXTURE` names).
mod parity_multi_image;

/// LLaVA-Rad's native release (base + LoRA + projector + open_clip trunk) against its reference.
mod parity_llava_rad;

/// Grad-CAM: autograd against finite differences on the tiny fixtures; the map's grid and sign.
mod gradcam;

/// The occlusion reference map (grounding G1): batched and prefix-reusing against a slow reference.
mod occlusion;

/// The null edits (grounding G4) and the weight-randomisation cascade (G5), with planted truths.
mod null_edits_randomization;

/// `radlens study --conditions`: image conditions (G6) and decision quality (G7) end to end.
mod conditions;

/// Models with a planted truth: the generator, the committed models, what a study finds in them.
mod planted;

/// Multi-image models with a planted truth: the prior conditions and per-image occlusion tell
/// the model that reads the prior from the one that does not.
mod planted_multi;

/// `radlens study`: prefix sharing, resume after SIGKILL, bad rows, configuration changes.
mod cli_study;

/// `radlens study` with prior and lateral images (issue 21): per-image maps and mass shares,
/// resume, analysis, export; a missing prior and a single-image model as per-row errors.
mod multi_image_study;

/// Image conditions on multi-image rows (`prior_blank`, `prior_swap`, the current image's),
/// each against the same images asked directly; MAIRA-2 through a study.
mod multi_image_conditions;

/// `radlens bench --images N`: several images per prompt against the 1-image baseline of the
/// same run; single-image presets refuse.
mod bench_multi_image;

/// `radlens probe`: answers, maps, `--dump` against the reference tensors, input errors.
mod cli_probe;

/// `radlens probe --prior/--lateral`: each image's map and share, the study's numbers.
mod probe_images;

/// Safetensors layouts and shards; missing and misshapen tensors.
mod checkpoint_layouts;

/// `radlens import` + `radlens variants` + `radlens study` on the bundled images (issue 19).
mod import_study;

/// `radlens study --shard` x3 + `radlens merge` against one unsharded run of the same study.
mod study_shards;

/// The dashboard bundle in `dist/` (scripts/build-web.sh) in headless Chromium via chromedriver.
mod browser;

/// `radlens serve`: auth, traversal, share links, limits, jobs and a loopback load test.
mod server_api;
