//! The study runner: every planned row through every model, one record per (row, model, pass).
//!
//! Speed by design: per model, each image is decoded, preprocessed and encoded once; the KV
//! cache of the prompt prefix that all of a study's variants share (everything up to the
//! question, found as the longest common run of token ids, never splitting an image block) is
//! computed once and reused by every variant. Where a variant needs attention rows inside that
//! prefix (a `term:` query on prefix text), it takes the full prefill instead.
//!
//! Resilience: a row with a CSV problem, an unreadable image or a failed inference becomes an
//! error record and the run goes on; finished records are skipped on a rerun (resume); a stop
//! request (Ctrl-C) ends the run between records with everything written kept.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use image::DynamicImage;
use radlens_shared::AttentionMap;
use radlens_shared::geometry::{MapGeometry, bbox_mask};
use radlens_shared::grounding::ImageCondition;
use radlens_shared::metrics::MapMetrics;
use radlens_shared::record::{
    CaseError, CaseRecord, ConditionRecord, ErrorStage, Latency, MapRecord, MethodMap, Pass, SCHEMA_VERSION, TrustRecord,
};
use radlens_shared::roi::roi_metrics;

use super::conditions::{ConditionImage, SwapPartners, blank_image, condition_image, condition_passes, shown_image};
use super::multi_image::{MultiImageCase, RowImageEncoded};
use super::plan::StudyRow;
use super::run_dir::{AttentionFile, RunWriter};
use crate::case::image::EncodeError;
use crate::case::null_edit::{self, EditedImage};
use crate::case::occlusion::{OccludedImages, OcclusionSettings};
use crate::case::trust::{self, MethodValues, TrustChecks};
use crate::case::{Capture, Case, CaseImage, CaseMap, CasePlan, CaseSpec, run_case};
use crate::models::generate::Prefix;
use crate::models::kv_cache::KvCache;
use crate::models::loader::Engine;
use crate::models::probe::NoProbe;
use crate::models::processor::preprocess::load_image;
use crate::models::processor::{EncodedPrompt, ImageRole};

/// Why a case has no record of its own: the stage and the message of its error record.
pub(super) type CaseFailure = (ErrorStage, String);

/// How a study runs its cases.
#[derive(Debug, Clone)]
pub struct StudySettings {
    /// Every case's capture, fusion, generation length and trust checks.
    pub case: CaseSpec,
    /// Also answer every question with a blank image (image reliance).
    pub text_only_pass: bool,
    /// Reuse the KV cache of the prompt prefix a study's variants share.
    pub share_prefix: bool,
    /// The image conditions besides the real and the blank image (G6), each a pass of its own.
    pub conditions: Vec<ImageCondition>,
}

/// Receives progress as records are written.
pub trait Progress {
    /// The number of records this run will write or skip, once known.
    fn start(&mut self, total: usize);
    fn record(&mut self, record: &CaseRecord);
    fn message(&mut self, text: &str);
}

/// One model's pass over the planned studies.
pub struct ModelRun<'a> {
    pub name: &'a str,
    pub engine: &'a Engine,
    pub device: &'a Device,
    pub images: &'a Path,
    pub settings: &'a StudySettings,
    /// Records already written (resume): (sample_id, model, pass).
    pub done: &'a HashSet<(String, String, Pass)>,
    pub stop: &'a AtomicBool,
    /// Each study's swap partners and each study's base image (the swap conditions).
    pub partners: &'a BTreeMap<String, SwapPartners>,
    pub partner_images: &'a BTreeMap<String, String>,
}

/// What one model's pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ModelRunStats {
    pub written: usize,
    pub skipped: usize,
    pub errors: usize,
    pub stopped: bool,
}

impl ModelRun<'_> {
    /// Runs `studies` (each: its rows, variants in order), appending records to `writer`.
    pub fn run(
        &self,
        studies: &[(String, Vec<&StudyRow>)],
        writer: &mut RunWriter,
        attention: &mut AttentionFile,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<ModelRunStats> {
        let mut stats = ModelRunStats::default();
        let passes = condition_passes(self.settings.text_only_pass, &self.settings.conditions);
        // Resolved once per model; a spec that does not fit the model fails every case the same way.
        let plan = CasePlan::resolve(self.settings.case.clone(), self.name, &self.engine.model.summary()).map_err(|e| e.to_string());
        let mut blank: Option<CaseImage> = None;
        for (_, rows) in studies {
            for &pass in &passes {
                if self.stop.load(Ordering::SeqCst) {
                    stats.stopped = true;
                    return Ok(stats);
                }
                let todo: Vec<&StudyRow> =
                    rows.iter().copied().filter(|r| !self.done.contains(&(r.sample_id(), self.name.to_string(), pass))).collect();
                stats.skipped += rows.len() - todo.len();
                if todo.is_empty() {
                    continue;
                }
                let records = self.run_study(&plan, &todo, pass, &mut blank, attention)?;
                // Attention data first, then the records that point to it.
                attention.flush()?;
                for record in records {
                    if record.error.is_some() {
                        stats.errors += 1;
                    }
                    writer.append(&record)?;
                    progress.record(&record);
                    stats.written += 1;
                }
            }
        }
        Ok(stats)
    }

    pub(super) fn run_study(
        &self,
        plan: &Result<CasePlan, String>,
        rows: &[&StudyRow],
        pass: Pass,
        blank: &mut Option<CaseImage>,
        attention: &mut AttentionFile,
    ) -> anyhow::Result<Vec<CaseRecord>> {
        let mut out = Vec::with_capacity(rows.len());
        // Rows with CSV problems never reach the model.
        let (bad, good): (Vec<&StudyRow>, Vec<&StudyRow>) = rows.iter().partition(|r| r.problem.is_some());
        for r in bad {
            out.push(self.error_record(r, pass, ErrorStage::Csv, r.problem.clone().unwrap_or_default()));
        }
        if !matches!(pass, Pass::Image | Pass::BlankImage) {
            let plan = match plan {
                Ok(plan) => plan,
                Err(message) => {
                    out.extend(good.iter().map(|r| self.error_record(r, pass, ErrorStage::Capture, message.clone())));
                    return Ok(out);
                }
            };
            // Multi-image rows (issue 21): the prior conditions replace the prior; every other
            // condition acts on the current image, the row's other images kept.
            let (with_prior, good): (Vec<&StudyRow>, Vec<&StudyRow>) =
                good.into_iter().partition(|r| pass.condition().needs_prior() && r.extra_images.iter().any(|e| e.role == ImageRole::Prior));
            out.extend(self.run_prior_condition(plan, &with_prior, pass, blank, attention)?);
            out.extend(self.run_condition(plan, &good, pass, attention)?);
            out.sort_by_key(|r| r.variant_index);
            return Ok(out);
        }
        // Group by image (a study is normally one image, but nothing requires it).
        for rows in group_by_images(good) {
            let image_path = rows[0].image_path.clone();
            let plan = match plan {
                Ok(plan) => plan,
                Err(message) => {
                    out.extend(rows.iter().map(|r| self.error_record(r, pass, ErrorStage::Capture, message.clone())));
                    continue;
                }
            };
            let mut original = None;
            let encoded = match pass {
                Pass::Image => match load_image(&self.images.join(&image_path)) {
                    Ok(img) => {
                        let e = self.encode_image(&img);
                        original = Some(img);
                        e
                    }
                    Err(e) => Err((ErrorStage::Image, format!("{e:#}"))),
                },
                // The other conditions went to `run_condition` above.
                _ => match blank {
                    Some(b) => Ok(b.reused()),
                    None => {
                        let e = self.encode_image(&blank_image());
                        if let Ok(e) = &e {
                            *blank = Some(e.reused());
                        }
                        e
                    }
                },
            };
            let encoded = match encoded {
                Ok(e) => e,
                Err((stage, message)) => {
                    for r in rows {
                        out.push(self.error_record(r, pass, stage, message.clone()));
                    }
                    continue;
                }
            };
            // A multi-image row's other images, each encoded once for all its questions.
            let extras = match self.encode_extra_images(&rows[0].extra_images) {
                Ok(extras) => extras,
                Err((stage, message)) => {
                    out.extend(rows.iter().map(|r| self.error_record(r, pass, stage, message.clone())));
                    continue;
                }
            };
            // Null edits (G4): the original image edited and encoded once for all its questions
            // (a multi-image row's current image, its other images kept).
            let edits = match (plan.spec.grounding, &original) {
                (Some(g), Some(img)) if g.null_edits => Some(null_edit::encode_edits(self.engine, img, self.device)),
                _ => None,
            };
            if !extras.is_empty() {
                let current = RowImageEncoded { role: ImageRole::Current, path: image_path.clone(), image: encoded };
                out.extend(self.run_multi_image(
                    plan,
                    &rows,
                    pass,
                    extras.into_iter().chain([current]).collect(),
                    edits.as_deref(),
                    attention,
                )?);
                continue;
            }
            out.extend(self.run_variants(plan, &rows, pass, &encoded, edits.as_deref(), attention)?);
        }
        out.sort_by_key(|r| r.variant_index);
        Ok(out)
    }

    /// The KV cache of `prompts[0]`'s first `prefix_len` tokens, and the time it took (none
    /// when there is nothing to share or the prefill fails: every case then runs in full).
    pub(super) fn prefix_cache(
        &self,
        prompts: &[(&StudyRow, EncodedPrompt)],
        prefix_len: usize,
        image: &CaseImage,
    ) -> (Option<KvCache>, f64) {
        if prefix_len == 0 {
            return (None, 0.0);
        }
        let (_, p) = &prompts[0];
        let t = std::time::Instant::now();
        let mut cache = self.engine.model.new_cache();
        match self.engine.model.prefill_from(&p.input_ids[..prefix_len], 0, &image.features, &mut cache, &mut NoProbe) {
            Ok(_) => (Some(cache), t.elapsed().as_secs_f64() * 1e3),
            Err(_) => (None, 0.0),
        }
    }

    /// One image condition's pass over a study's rows: each row's shown image made and encoded
    /// once per (source image, box), the rows run on it without capture; a row the condition
    /// has no image for gets a record that says why.
    pub(super) fn run_condition(
        &self,
        plan: &CasePlan,
        rows: &[&StudyRow],
        pass: Pass,
        attention: &mut AttentionFile,
    ) -> anyhow::Result<Vec<CaseRecord>> {
        let mut out = Vec::new();
        let mut originals: BTreeMap<String, Result<DynamicImage, String>> = BTreeMap::new();
        let mut load = |path: &str| -> Result<DynamicImage, String> {
            originals.entry(path.to_string()).or_insert_with(|| load_image(&self.images.join(path)).map_err(|e| format!("{e:#}"))).clone()
        };
        let mut geometries: BTreeMap<String, Option<MapGeometry>> = BTreeMap::new();
        let mut groups: Vec<(ConditionImage, Vec<(&StudyRow, ConditionImage)>)> = Vec::new();
        for &row in rows {
            // Where the map lies on the row's own image (the control box and the box check), once
            // per image; only the box conditions need it.
            let boxed = match pass {
                Pass::RoiOccluded | Pass::ControlOccluded => row.roi.is_some(),
                Pass::ConfoundOccluded => row.confound.is_some(),
                _ => false,
            };
            let geometry = if boxed {
                *geometries.entry(row.image_path.clone()).or_insert_with(|| {
                    let img = load(&row.image_path).ok()?;
                    let pre = self.engine.image_processor.preprocess(&img).ok()?;
                    // The map grid of this image (per image for Qwen2.5-VL).
                    let (h, w) = self.engine.model.image_grid(&pre.to_tensor(self.device).ok()?).ok()?;
                    Some(MapGeometry { h, w, crop: pre.crop, image_w: pre.image_w, image_h: pre.image_h })
                })
            } else {
                None
            };
            let shown = condition_image(row, pass, self.partners.get(&row.study_id), self.partner_images, geometry.as_ref());
            match shown {
                // A multi-image row shares the shown image only with rows whose other images match.
                Ok(c) => match groups
                    .iter_mut()
                    .find(|(g, m)| g.source == c.source && g.occluded_box == c.occluded_box && m[0].0.extra_images == row.extra_images)
                {
                    Some((_, members)) => members.push((row, c)),
                    None => groups.push((c.clone(), vec![(row, c)])),
                },
                Err(why) => out.push(self.not_run_record(row, pass, why)),
            }
        }
        for (shown, members) in groups {
            let image = load(&shown.source)
                .map_err(|e| (ErrorStage::Image, e))
                .and_then(|original| shown_image(&original, pass, &shown).map_err(|e| (ErrorStage::Preprocess, e)))
                .and_then(|img| self.encode_image(&img));
            let member_rows: Vec<&StudyRow> = members.iter().map(|(r, _)| *r).collect();
            let extras = image.and_then(|image| Ok((image, self.encode_extra_images(&member_rows[0].extra_images)?)));
            let records = match extras {
                Ok((image, extras)) if extras.is_empty() => self.run_variants(plan, &member_rows, pass, &image, None, attention)?,
                Ok((image, extras)) => {
                    let current = RowImageEncoded { role: ImageRole::Current, path: shown.source.clone(), image };
                    self.run_multi_image(plan, &member_rows, pass, extras.into_iter().chain([current]).collect(), None, attention)?
                }
                Err((stage, message)) => member_rows.iter().map(|r| self.error_record(r, pass, stage, message.clone())).collect(),
            };
            for mut record in records {
                let Some((_, c)) = members.iter().find(|(r, _)| r.sample_id() == record.sample_id) else { continue };
                record.image = c.source.clone();
                record.ground_truth = c.truth;
                record.correct = record.parsed_answer.zip(c.truth).map(|(a, t)| a == t);
                record.condition = Some(ConditionRecord {
                    partner_study: c.partner_study.clone(),
                    occluded_box: c.occluded_box,
                    ..ConditionRecord::default()
                });
                out.push(record);
            }
        }
        Ok(out)
    }

    /// A row the condition has no image for: no answer, and why (not an error of the run).
    pub(super) fn not_run_record(&self, row: &StudyRow, pass: Pass, why: String) -> CaseRecord {
        CaseRecord { condition: Some(ConditionRecord { not_run: Some(why), ..ConditionRecord::default() }), ..self.base_record(row, pass) }
    }

    pub(super) fn encode_image(&self, img: &DynamicImage) -> Result<CaseImage, (ErrorStage, String)> {
        CaseImage::encode(self.engine, img, self.device).map_err(|e| match e {
            EncodeError::Preprocess(e) => (ErrorStage::Preprocess, e.to_string()),
            EncodeError::Encode(e) => (ErrorStage::Inference, e.to_string()),
        })
    }

    /// The shared prefix: the longest common run of ids, leaving each variant a token of its
    /// own, never cut through an image block (its tokens attend to each other both ways), and
    /// only worth sharing when the whole image is in it.
    pub(super) fn shared_prefix_len(&self, prompts: &[(&StudyRow, EncodedPrompt)]) -> usize {
        let mut prefix_len = match prompts {
            [first, rest @ ..] if self.settings.share_prefix && !rest.is_empty() => {
                let mut n = first.1.input_ids.len() - 1;
                for (_, p) in rest {
                    n = n.min(p.input_ids.len() - 1);
                    n = n.min(first.1.input_ids.iter().zip(&p.input_ids).take_while(|(a, b)| a == b).count());
                }
                n
            }
            _ => 0,
        };
        if let Some((_, p)) = prompts.first() {
            let image_id = self.engine.model.summary().image_token_id;
            while prefix_len > 0
                && prefix_len < p.input_ids.len()
                && p.input_ids[prefix_len - 1] == image_id
                && p.input_ids[prefix_len] == image_id
            {
                prefix_len -= 1;
            }
            if p.image_positions.iter().any(|&i| i >= prefix_len) {
                prefix_len = 0;
            }
        }
        prefix_len
    }

    pub(super) fn run_variants(
        &self,
        plan: &CasePlan,
        rows: &[&StudyRow],
        pass: Pass,
        image: &CaseImage,
        edits: Option<&[EditedImage]>,
        attention: &mut AttentionFile,
    ) -> anyhow::Result<Vec<CaseRecord>> {
        let mut out = Vec::new();
        let mut prompts = Vec::new();
        for r in rows {
            // The image's own token count: fixed for most models, per image for Qwen2.5-VL.
            match self.engine.prompter.encode_for_image(&r.question, None, image.image_tokens()) {
                Ok(p) => prompts.push((*r, p)),
                Err(e) => out.push(self.error_record(r, pass, ErrorStage::Preprocess, e.to_string())),
            }
        }
        let prefix_len = self.shared_prefix_len(&prompts);
        // The generic prompt's map (sinks, relative maps): once per image, as the shared prefix.
        let generic = match (&plan.spec.trust, pass) {
            (Some(t), Pass::Image) if t.sinks => {
                Some(trust::generic_map(self.engine, plan, &image.features).map_err(|e| format!("generic-prompt map: {e}")))
            }
            _ => None,
        };
        let (prefix_cache, shared_ms) = self.prefix_cache(&prompts, prefix_len, image);
        let capture = if pass == Pass::Image { Capture::Map } else { Capture::Nothing };
        // Grounding: the occluded images, encoded once for all of this image's questions.
        let occluded = match (plan.spec.grounding, pass) {
            (Some(g), Pass::Image) => {
                let settings = OcclusionSettings { grid: g.occlusion_grid, batch: g.occlusion_batch };
                // On failure each case tries again and notes why in its record.
                OccludedImages::encode(self.engine.model.as_ref(), &image.pixels, settings).ok()
            }
            _ => None,
        };
        let mut own_maps: Vec<Option<Vec<f64>>> = Vec::new();
        for (i, (row, prompt)) in prompts.iter().enumerate() {
            let first = i == 0;
            // A box off the image is a CSV mistake: the row keeps its answer and maps, without
            // box figures, and its record says why.
            let g = image.geometry;
            let roi = row.roi.filter(|b| b.inside_image(g.image_w, g.image_h));
            let case = Case {
                engine: self.engine,
                plan,
                image,
                prompt,
                prefix: prefix_cache.as_ref().map(|cache| Prefix { cache, len: prefix_len }),
                capture,
                generic: generic.as_ref(),
                seed: trust::seed_of(&row.sample_id()),
                roi,
                confound: row.confound.filter(|b| b.inside_image(g.image_w, g.image_h)),
                occluded: occluded.as_ref(),
                null_edits: edits,
            };
            let mut record = match self.record_of(row, pass, case, None, attention) {
                Ok((record, own)) => {
                    own_maps.push(own);
                    record
                }
                Err((stage, message)) => {
                    own_maps.push(None);
                    self.error_record(row, pass, stage, message)
                }
            };
            if let (Some(b), None, Some(grounding)) = (row.roi, roi, record.grounding.as_mut()) {
                grounding.notes.push(format!(
                    "box: roi_x {}, roi_y {}, roi_w {}, roi_h {} (CSV line {}) is not inside the {}x{} image; no box controls or box score",
                    b.x0,
                    b.y0,
                    b.width(),
                    b.height(),
                    row.csv_line,
                    g.image_w,
                    g.image_h
                ));
            }
            finish_latency(&mut record, first.then_some(image), shared_ms);
            out.push(record);
        }
        if let Some(Ok(generic)) = &generic {
            // Records of prompt-problem rows came first; the rest follow `own_maps`' order.
            let first = out.len() - own_maps.len();
            let maps: Vec<Option<&[f64]>> = own_maps.iter().map(|m| m.as_deref()).collect();
            for (record, sinks) in out[first..].iter_mut().zip(trust::sink_checks(&maps, generic)) {
                if let (Some(sinks), Some(t)) = (sinks, record.trust.as_mut()) {
                    t.sinks = Some(sinks);
                }
            }
        }
        Ok(out)
    }

    /// Runs one case and stores its maps: the record, and its normalised attention map (kept in
    /// memory for the study's sinks; `None` for a fallback or a pass without capture).
    pub(super) fn record_of(
        &self,
        row: &StudyRow,
        pass: Pass,
        case: Case<'_>,
        multi: Option<MultiImageCase<'_>>,
        attention: &mut AttentionFile,
    ) -> Result<(CaseRecord, Option<Vec<f64>>), CaseFailure> {
        let plan = case.plan;
        let outcome = run_case(case).map_err(|e| (e.stage(), e.to_string()))?;
        let t = std::time::Instant::now();
        let (map, own) = match &outcome.map {
            Some(m) => {
                let stored = self.store_map(m, row, attention).map_err(|e| (ErrorStage::Capture, e))?;
                (Some(stored), m.attention.as_ref().map(|_| m.own.values.clone()))
            }
            None => (None, None),
        };
        // Fusion and storing the map; the trust checks' passes are not capture.
        let capture_ms = if map.is_some() { outcome.capture_ms + t.elapsed().as_secs_f64() * 1e3 } else { 0.0 };
        let mut trust = outcome.trust.as_ref().zip(map.as_ref()).map(|(checks, _)| self.store_trust(checks, row, attention));
        let grounding = outcome.grounding.as_ref().filter(|_| map.is_some()).map(|g| {
            // The occlusion map is stored beside the other methods' maps, so every view of them has it.
            if let Some(m) = &g.occlusion_map {
                let t = trust.get_or_insert_with(TrustRecord::default);
                match self.store_method_map(m, row, attention) {
                    Ok(mm) => t.maps.push(mm),
                    Err(e) => t.notes.push(format!("occlusion: {e}")),
                }
            }
            g.record.clone()
        });
        let mut record = self.base_record(row, pass);
        record.correct = row.answer.map(|truth| outcome.parsed == truth);
        record.answer_text = Some(outcome.answer_text);
        record.parsed_answer = Some(outcome.parsed);
        record.yes_no_margin = outcome.margin;
        record.latency = Latency {
            prefill_ms: outcome.generation.prefill_ms,
            decode_ms: outcome.generation.decode_ms,
            capture_ms,
            ..Latency::default()
        };
        record.map = map;
        record.trust = trust;
        record.grounding = grounding;
        if let (Some(multi), Some(CaseMap { own: own_map, attention: Some(_) })) = (multi, &outcome.map) {
            let (images, fused) = self
                .store_image_maps(plan, &outcome.recorder, &own_map.provenance, &multi, attention)
                .map_err(|e| (ErrorStage::Capture, format!("per-image maps: {e}")))?;
            record.images = images;
            self.image_methods(row, &multi, own_map, &fused, &mut record, attention);
        }
        Ok((record, own))
    }

    /// The record's own map: attention with its raw image rows (for re-fusing later), or a
    /// fallback with none (`head_rows` is empty).
    pub(super) fn store_map(&self, m: &CaseMap, row: &StudyRow, attention: &mut AttentionFile) -> Result<MapRecord, String> {
        let Some(att) = &m.attention else {
            let stored = self.store_method_map(&m.own, row, attention)?;
            let head_rows = attention.append(&[], vec![0]).map_err(|e| e.to_string())?;
            return Ok(MapRecord {
                provenance: stored.provenance,
                image_share: 0.0,
                metrics: stored.metrics,
                roi: stored.roi,
                values: stored.values,
                head_rows,
            });
        };
        let g = m.own.provenance.geometry;
        let map = AttentionMap::new(g.h, g.w, att.fused.clone()).map_err(|e| e.to_string())?;
        let metrics = MapMetrics::of(&map).map_err(|e| e.to_string())?;
        let roi = match row.roi {
            Some(b) => roi_metrics(&m.own.values, &bbox_mask(g.h, g.w, &g.crop, &b)).map_err(|e| e.to_string())?,
            None => None,
        };
        let values32: Vec<f32> = att.fused.iter().map(|&v| v as f32).collect();
        let values = attention.append(&values32, vec![g.h, g.w]).map_err(|e| e.to_string())?;
        let head_rows = attention.append(&att.head_rows, att.head_rows_shape.to_vec()).map_err(|e| e.to_string())?;
        Ok(MapRecord { provenance: m.own.provenance.clone(), image_share: att.image_share, metrics, roi, values, head_rows })
    }

    /// Stores another method's map (normalised) with its metrics.
    pub(super) fn store_method_map(&self, m: &MethodValues, row: &StudyRow, attention: &mut AttentionFile) -> Result<MethodMap, String> {
        let g = m.provenance.geometry;
        let map = AttentionMap::new(g.h, g.w, m.values.clone()).map_err(|e| e.to_string())?;
        let metrics = MapMetrics::of(&map).map_err(|e| e.to_string())?;
        let roi = match row.roi {
            Some(b) => roi_metrics(&m.values, &bbox_mask(g.h, g.w, &g.crop, &b)).map_err(|e| e.to_string())?,
            None => None,
        };
        let values32: Vec<f32> = m.values.iter().map(|&v| v as f32).collect();
        let values = attention.append(&values32, vec![g.h, g.w]).map_err(|e| e.to_string())?;
        Ok(MethodMap { provenance: m.provenance.clone(), metrics, roi, values })
    }

    /// The trust checks as the record keeps them, their maps stored (a map that cannot be
    /// stored is a note).
    pub(super) fn store_trust(&self, checks: &TrustChecks, row: &StudyRow, attention: &mut AttentionFile) -> TrustRecord {
        let mut out = TrustRecord {
            faithfulness: checks.faithfulness.clone(),
            agreement: checks.agreement.clone(),
            notes: checks.notes.clone(),
            ..TrustRecord::default()
        };
        for m in &checks.maps {
            match self.store_method_map(m, row, attention) {
                Ok(mm) => out.maps.push(mm),
                Err(e) => out.notes.push(format!("{}: {e}", m.provenance.method)),
            }
        }
        out
    }

    pub(super) fn base_record(&self, row: &StudyRow, pass: Pass) -> CaseRecord {
        CaseRecord {
            schema_version: SCHEMA_VERSION,
            sample_id: row.sample_id(),
            study_id: row.study_id.clone(),
            subject_id: row.subject_id.clone(),
            csv_line: row.csv_line,
            variant_index: row.variant_index,
            strategy: row.strategy.clone(),
            polarity: row.polarity,
            finding: row.finding.clone(),
            model: self.name.to_string(),
            pass,
            image: row.image_path.clone(),
            question: row.question.clone(),
            ground_truth: row.answer,
            roi: row.roi,
            confound: row.confound,
            answer_text: None,
            parsed_answer: None,
            correct: None,
            yes_no_margin: None,
            latency: Latency::default(),
            map: None,
            error: None,
            trust: None,
            grounding: None,
            condition: None,
            images: Vec::new(),
            metadata: {
                // The variant's name is kept with the other uninterpreted columns.
                let mut m = row.metadata.clone();
                if let Some(name) = &row.variant_name {
                    m.insert("question_variant".into(), name.clone());
                }
                m
            },
        }
    }

    pub(super) fn error_record(&self, row: &StudyRow, pass: Pass, stage: ErrorStage, message: String) -> CaseRecord {
        CaseRecord { error: Some(CaseError { stage, message }), ..self.base_record(row, pass) }
    }
}

/// Rows grouped by every image they show (`StudyRow::image_key`), in first-seen order: rows
/// whose priors differ never share an encoding or a prefix.
pub(super) fn group_by_images<'a>(rows: impl IntoIterator<Item = &'a StudyRow>) -> Vec<Vec<&'a StudyRow>> {
    let mut groups: Vec<(String, Vec<&StudyRow>)> = Vec::new();
    for r in rows {
        let key = r.image_key();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups.into_iter().map(|(_, v)| v).collect()
}

/// A case record's latency: the first case of a group carries the group's image preprocessing
/// and encoding (`image`; kept off an error record) and the shared prefix's prefill; the total
/// is the sum of the parts.
pub(super) fn finish_latency(record: &mut CaseRecord, image: Option<&CaseImage>, shared_prefill_ms: f64) {
    let l = &mut record.latency;
    if let Some(image) = image {
        if record.error.is_none() {
            l.preprocess_ms = image.preprocess_ms;
            l.image_encode_ms = image.encode_ms;
        }
        l.prefill_ms += shared_prefill_ms;
    }
    l.total_ms = l.preprocess_ms + l.image_encode_ms + l.prefill_ms + l.decode_ms + l.capture_ms;
}
