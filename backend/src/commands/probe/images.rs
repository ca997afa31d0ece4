//! `radlens probe --prior IMG [--lateral IMG]` (issue 21): one question of one case with
//! several images. The prompt, the features and the case are made as the study's multi-image
//! rows make them (the shared helpers of `case::multi_image`): the case's own map is the current
//! image's, and every method asked for is split per image, each image's map on its own grid
//! with its share of the method's mass.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use radlens_shared::AttentionMap;
use radlens_shared::fusion::{MapMethod, MapProvenance};
use radlens_shared::geometry::MapGeometry;
use radlens_shared::metrics::MapMetrics;
use serde::Serialize;

use super::{Header, ProbeMap, ProbeReport, ProbeTrust, Timings, case_error, ms, probe_map};
use crate::case::grounding::{self, Boxes, GroundingOutcome};
use crate::case::image::EncodeError;
use crate::case::multi_image::{
    ImageMap, attention_by_image, combined_image, current_index, current_part, current_prompt, deletion_on_image, generic_map_multi,
    gradcam_by_image, occlusion_by_image, occlusion_per_image, relative_by_image, request_rank,
};
use crate::case::occlusion::{MarginProbe, OccludedImages, OcclusionMap, OcclusionSettings};
use crate::case::trust::{self, MethodValues};
use crate::case::{Capture, Case, CaseImage, CasePlan, CaseSpec, run_case};
use crate::cli::ProbeArgs;
use crate::error::InputError;
use crate::models::error::ModelError;
use crate::models::loader::Engine;
use crate::models::processor::preprocess::load_image;
use crate::models::processor::{ImageRole, PromptImage};

/// One image of the prompt: its attention map on its own grid, and the other methods' maps.
#[derive(Serialize)]
pub(super) struct ProbeImage {
    role: String,
    file: String,
    /// The image's share of the attention mass over all the prompt's images.
    image_mass_share: f64,
    #[serde(flatten)]
    map: AttentionMap,
    metrics: MapMetrics,
    provenance: MapProvenance,
    /// `--gradcam`, `--sinks` (relative map), `--occlusion`: each method's map of this image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    methods: Vec<ProbeImageMethod>,
}

#[derive(Serialize)]
pub(super) struct ProbeImageMethod {
    /// The image's share of this method's mass over all the prompt's images.
    image_mass_share: f64,
    #[serde(flatten)]
    map: AttentionMap,
    metrics: MapMetrics,
    provenance: MapProvenance,
}

impl ProbeImage {
    pub(super) fn print_row(&self) {
        let methods: String =
            self.methods.iter().map(|m| format!("  {} {:.4}", m.provenance.method, m.image_mass_share)).collect::<Vec<_>>().concat();
        println!(
            "           {:<8} {:<28} {:>7} {:>8.4} {:>8.4} {:>8.4}{methods}",
            self.role,
            self.file,
            format!("{}x{}", self.map.h, self.map.w),
            self.image_mass_share,
            self.metrics.focus,
            self.metrics.entropy_nats,
        );
    }
}

fn image_map(m: ImageMap) -> Result<(f64, AttentionMap, MapMetrics, MapProvenance), ModelError> {
    let g = m.provenance.geometry;
    Ok((m.share, AttentionMap::new(g.h, g.w, m.values)?, m.metrics, m.provenance))
}

/// Loads and encodes one image; a missing or unreadable file names its flag.
fn encode(engine: &Engine, flag: &'static str, path: &Path, device: &Device) -> anyhow::Result<CaseImage> {
    if !path.is_file() {
        return Err(InputError::Flag { flag, message: format!("{} does not exist", path.display()) }.into());
    }
    let img = load_image(path).map_err(|e| InputError::Flag { flag, message: format!("cannot read {}: {e:#}", path.display()) })?;
    CaseImage::encode(engine, &img, device)
        .map_err(|e| match e {
            EncodeError::Preprocess(e) | EncodeError::Encode(e) => e,
        })
        .with_context(|| format!("{flag} {}", path.display()))
}

/// The probe's report for `--prior` / `--lateral` (`timings` holds the load time).
pub(super) fn run(
    args: &ProbeArgs,
    engine: &Engine,
    plan: &CasePlan,
    device: &Device,
    header: Header,
    mut timings: Timings,
    start: Instant,
) -> anyhow::Result<ProbeReport> {
    let t = Instant::now();
    let current = args.image.as_deref().context("--prior and --lateral need --image (the current image)")?;
    let mut files: Vec<(ImageRole, &'static str, &Path)> = vec![(ImageRole::Current, "--image", current)];
    files.extend(args.prior.as_deref().map(|p| (ImageRole::Prior, "--prior", p)));
    files.extend(args.lateral.as_deref().map(|p| (ImageRole::Lateral, "--lateral", p)));
    files.sort_by_key(|f| request_rank(f.0));
    let images: Vec<CaseImage> = files.iter().map(|&(_, flag, path)| encode(engine, flag, path, device)).collect::<Result<_, _>>()?;
    let request: Vec<PromptImage> = files.iter().zip(&images).map(|(f, i)| PromptImage { role: f.0, tokens: i.image_tokens() }).collect();
    let m = engine.prompter.encode_images(&args.question, args.system.as_deref(), &request).map_err(|e| InputError::Flag {
        flag: if args.prior.is_some() { "--prior" } else { "--lateral" },
        message: format!(
            "model {} ({}) cannot be shown {} images ({}): {e}",
            header.model,
            header.architecture,
            request.len(),
            request.iter().map(|r| r.role.as_str()).collect::<Vec<_>>().join(", ")
        ),
    })?;
    if let Some(g) = plan.spec.grounding.filter(|g| g.occlusion) {
        for ((role, ..), image) in files.iter().zip(&images) {
            let side = image.pixels.dim(2)?.min(image.pixels.dim(3)?);
            if g.occlusion_grid > side {
                return Err(InputError::Flag {
                    flag: "--occlusion-grid",
                    message: format!("{} is larger than the {role} image's model input side {side}", g.occlusion_grid),
                }
                .into());
            }
        }
    }
    let combined = combined_image(&images.iter().collect::<Vec<_>>(), &m)?;
    let own_prompt = current_prompt(&m);
    timings.preprocess = ms(t);

    // The case runs without checks; each runs per image after it, as on a study's row.
    let case_plan = CasePlan { spec: CaseSpec { trust: None, grounding: None, ..plan.spec.clone() }, ..plan.clone() };
    let case = Case {
        engine,
        plan: &case_plan,
        image: &combined,
        prompt: &own_prompt,
        prefix: None,
        capture: Capture::Map,
        generic: None,
        seed: 0,
        roi: None,
        confound: None,
        occluded: None,
        null_edits: None,
    };
    let outcome = run_case(case).map_err(case_error)?;
    let map = outcome.map.context("the probe captures a map")?;
    timings.prefill = outcome.generation.prefill_ms;
    timings.decode = outcome.generation.decode_ms;
    timings.capture = outcome.capture_ms;

    let t = Instant::now();
    let geometries: Vec<MapGeometry> = m.order.iter().map(|&i| images[i].geometry).collect();
    let current = current_index(&m);
    let own = &map.own;
    let model = engine.model.as_ref();
    let tokenizer = engine.prompter.tokenizer();
    let (yes, no) = (tokenizer.single_token_spellings("yes"), tokenizer.single_token_spellings("no"));
    let input_ids = &m.prompt.input_ids;
    let mut notes = Vec::new();
    // Each method's maps (prompt order), in the order they are made.
    let mut methods: Vec<Vec<ImageMap>> = Vec::new();
    let mut keep = |what: &str, maps: Result<Vec<ImageMap>, String>, notes: &mut Vec<String>| match maps {
        Ok(maps) => methods.push(maps),
        Err(e) => notes.push(format!("{what} per image: {e}")),
    };

    // Without attention (a fallback map) there is nothing to split, and the other methods'
    // shares would have no attention to be compared with.
    if map.attention.is_none() {
        anyhow::bail!(
            "the map is {}, not attention ({}): it cannot be split per image",
            own.provenance.method,
            own.provenance.fallback_reason.as_deref().unwrap_or("no reason given")
        );
    }
    let (attention, fused) = attention_by_image(&outcome.recorder, &case_plan, &own.provenance, &m, &geometries)
        .map_err(|e| anyhow::anyhow!("per-image maps: {e}"))?;
    let trust_settings = plan.spec.trust.as_ref();
    if trust_settings.is_some_and(|s| s.gradcam) {
        let pixels: Vec<_> = m.order.iter().map(|&i| &images[i].pixels).collect();
        keep("gradcam", gradcam_by_image(model, &m, &pixels, &combined.features, &yes, &no, &own.provenance, &geometries), &mut notes);
    }
    let mut sinks = None;
    if trust_settings.is_some_and(|s| s.sinks) {
        match generic_map_multi(engine, &case_plan, &request, &m, &combined.features) {
            Ok(generic) => {
                keep("relative map", relative_by_image(&fused, &generic, &own.provenance, &m, &geometries), &mut notes);
                // Sinks on the current image's map, against the generic map's current-image part.
                match current_part(&generic, &m) {
                    Ok(part) => sinks = trust::sink_checks(&[Some(&own.values)], &part).pop().flatten(),
                    Err(e) => notes.push(format!("sinks: {e}")),
                }
            }
            Err(e) => notes.push(format!("generic-prompt map: {e}")),
        }
    }
    // The whole prompt's margin with any image's features replaced: occlusion and deletion.
    let grounding_settings = plan.spec.grounding;
    let faithfulness = trust_settings.filter(|s| s.faithfulness);
    let occlusion = grounding_settings.filter(|g| g.occlusion);
    let probe = (occlusion.is_some() || faithfulness.is_some())
        .then(|| MarginProbe::new(model, input_ids, model.summary().image_token_id, &combined.features, &yes, &no));
    let parts: Vec<_> = m.order.iter().map(|&i| images[i].features.clone()).collect();
    let mut support: Option<OcclusionMap> = None;
    if let Some(g) = occlusion {
        let settings = OcclusionSettings { grid: g.occlusion_grid, batch: g.occlusion_batch };
        let maps = m
            .order
            .iter()
            .map(|&i| OccludedImages::encode(model, &images[i].pixels, settings))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|occluded| match &probe {
                Some(Ok(probe)) => occlusion_per_image(&parts, &occluded.iter().collect::<Vec<_>>(), probe.margin, |f| probe.margin_of(f)),
                Some(Err(e)) => Err(ModelError::Invalid(e.to_string())),
                None => Err(ModelError::Invalid("no margin probe".into())),
            });
        match maps {
            Ok(maps) => {
                keep("occlusion", occlusion_by_image(&maps, &own.provenance, &m, &geometries), &mut notes);
                support = Some(maps[current].clone());
            }
            Err(e) => notes.push(format!("occlusion: {e}")),
        }
    }

    // The current image's part of each method (but occlusion, which enters through grounding),
    // held against the case's own map as a single image's maps are.
    let others: Vec<MethodValues> = methods
        .iter()
        .filter_map(|maps| maps.get(current))
        .filter(|c| c.provenance.method != MapMethod::Occlusion && c.provenance.fallback_reason.is_none())
        .map(|c| MethodValues { values: c.values.clone(), provenance: c.provenance.clone() })
        .collect();
    let all: Vec<&MethodValues> = std::iter::once(own).chain(&others).collect();
    let mut probe_trust = ProbeTrust { agreement: trust::agreement(&all), sinks, ..ProbeTrust::default() };
    if let (Some(settings), Some(probe)) = (faithfulness, &probe) {
        let image = &images[m.order[current]];
        let g = image.geometry;
        match probe
            .as_ref()
            .map_err(|e| ModelError::Invalid(e.to_string()))
            .and_then(|probe| deletion_on_image(model, probe, &parts, current, &image.pixels, (g.h, g.w), &all, settings, 0))
        {
            Ok(f) => probe_trust.faithfulness = f,
            Err(e) => notes.push(format!("faithfulness on the current image: {e}")),
        }
    }
    let grounding = grounding_settings.map(|_| {
        let mut out = GroundingOutcome::default();
        grounding::figures(&mut out, support.as_ref(), &images[m.order[current]].pixels, &all, Boxes::default());
        out
    });
    probe_trust.maps =
        others.into_iter().chain(grounding.as_ref().and_then(|g| g.occlusion_map.clone())).map(probe_map).collect::<Result<_, _>>()?;
    probe_trust.notes = notes;
    timings.trust = ms(t);

    let mut per_image = Vec::with_capacity(attention.len());
    for (k, a) in attention.into_iter().enumerate() {
        let (role, path) = (a.role, files[m.order[k]].2);
        let (share, map, metrics, provenance) = image_map(a)?;
        let methods = methods
            .iter()
            .filter_map(|maps| maps.get(k).cloned())
            .map(|mm| {
                image_map(mm).map(|(image_mass_share, map, metrics, provenance)| ProbeImageMethod {
                    image_mass_share,
                    map,
                    metrics,
                    provenance,
                })
            })
            .collect::<Result<_, _>>()?;
        per_image.push(ProbeImage {
            role: role.to_string(),
            file: path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
            image_mass_share: share,
            map,
            metrics,
            provenance,
            methods,
        });
    }
    let image_share = map.attention.as_ref().map_or(0.0, |a| a.image_share);
    let checks = trust_settings.is_some() || grounding_settings.is_some() || !probe_trust.notes.is_empty();
    Ok(ProbeReport {
        model: header.model,
        architecture: header.architecture,
        dtype: header.dtype,
        question: args.question.clone(),
        input_ids: m.prompt.input_ids.clone(),
        image_token_positions: m.prompt.image_positions.clone(),
        generated_ids: outcome.generation.ids.clone(),
        parsed_answer: outcome.parsed,
        answer: outcome.answer_text,
        yes_no_margin: outcome.margin,
        map: ProbeMap { image_share, ..probe_map(map.own)? },
        trust: checks.then_some(probe_trust),
        grounding: grounding.map(|g| g.record),
        images: per_image,
        timings_ms: Timings { total: ms(start), ..timings },
    })
}
