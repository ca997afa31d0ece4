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

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use image::DynamicImage;
use radlens_shared::AttentionMap;
use radlens_shared::answer::{parse_answer, yes_no_margin};
use radlens_shared::fusion::{HeadFusion, LayerRange, MapMethod, MapProvenance, QueryMode, term_positions};
use radlens_shared::geometry::{MapGeometry, bbox_mask};
use radlens_shared::metrics::MapMetrics;
use radlens_shared::record::{
    CaseError, CaseRecord, ErrorStage, Latency, MapRecord, MethodMap, Pass, SCHEMA_VERSION, SinkCheck, TrustRecord,
};
use radlens_shared::roi::roi_metrics;
use radlens_shared::trust::{GENERIC_PROMPT, SINK_FACTOR, sink_cells, without_cells};

use super::plan::StudyRow;
use super::run_dir::{AttentionFile, RunWriter};
use crate::attention_map::fuse_captured;
use crate::models::generate::{Generation, Prefix, greedy_from};
use crate::models::loader::Engine;
use crate::models::probe::{AttentionRecorder, CapturePolicy, NoProbe, RowSelection};
use crate::models::processor::clip_image::load_image;
use crate::trust::{self, CaseInput, MethodValues, TrustSettings};

/// How each case is run and captured.
#[derive(Debug, Clone)]
pub struct CaseSettings {
    pub max_new_tokens: usize,
    pub layer_range: LayerRange,
    pub head_fusion: HeadFusion,
    pub query_mode: QueryMode,
    pub text_only_pass: bool,
    /// Reuse the KV cache of the prompt prefix a study's variants share.
    pub share_prefix: bool,
    /// Grad-CAM, faithfulness and sink checks on image-pass records (opt-in: extra passes).
    pub trust: Option<TrustSettings>,
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
    pub settings: &'a CaseSettings,
    /// Records already written (resume): (sample_id, model, pass).
    pub done: &'a HashSet<(String, String, Pass)>,
    pub stop: &'a AtomicBool,
}

/// What one model's pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ModelRunStats {
    pub written: usize,
    pub skipped: usize,
    pub errors: usize,
    pub stopped: bool,
}

/// An image as the model sees it, encoded once and shared by the study's variants.
struct EncodedImage {
    features: Tensor,
    /// The preprocessed pixels, for Grad-CAM and deletion tests.
    pixels: Tensor,
    geometry: MapGeometry,
    preprocess_ms: f64,
    encode_ms: f64,
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
        let passes: Vec<Pass> = if self.settings.text_only_pass { vec![Pass::Image, Pass::BlankImage] } else { vec![Pass::Image] };
        let mut blank: Option<EncodedImage> = None;
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
                let records = self.run_study(&todo, pass, &mut blank, attention)?;
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

    fn run_study(
        &self,
        rows: &[&StudyRow],
        pass: Pass,
        blank: &mut Option<EncodedImage>,
        attention: &mut AttentionFile,
    ) -> anyhow::Result<Vec<CaseRecord>> {
        let mut out = Vec::with_capacity(rows.len());
        // Rows with CSV problems never reach the model.
        let (bad, good): (Vec<&StudyRow>, Vec<&StudyRow>) = rows.iter().partition(|r| r.problem.is_some());
        for r in bad {
            out.push(self.error_record(r, pass, ErrorStage::Csv, r.problem.clone().unwrap_or_default()));
        }
        // Group by image (a study is normally one image, but nothing requires it).
        let mut by_image: Vec<(String, Vec<&StudyRow>)> = Vec::new();
        for r in good {
            match by_image.iter_mut().find(|(p, _)| *p == r.image_path) {
                Some((_, v)) => v.push(r),
                None => by_image.push((r.image_path.clone(), vec![r])),
            }
        }
        for (image_path, rows) in by_image {
            let encoded = match pass {
                Pass::Image => self.encode(&self.images.join(&image_path)),
                Pass::BlankImage => match blank {
                    Some(b) => Ok(EncodedImage {
                        features: b.features.clone(),
                        pixels: b.pixels.clone(),
                        geometry: b.geometry,
                        preprocess_ms: 0.0,
                        encode_ms: 0.0,
                    }),
                    None => {
                        // A blank (black) image: the text-only pass. Its size does not matter, it
                        // is resized to the model's input like any other.
                        let img = DynamicImage::new_luma8(512, 512);
                        let e = self.encode_image(&img);
                        if let Ok(e) = &e {
                            *blank = Some(EncodedImage {
                                features: e.features.clone(),
                                pixels: e.pixels.clone(),
                                geometry: e.geometry,
                                preprocess_ms: 0.0,
                                encode_ms: 0.0,
                            });
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
            out.extend(self.run_variants(&rows, pass, &encoded, attention)?);
        }
        out.sort_by_key(|r| r.variant_index);
        Ok(out)
    }

    fn encode(&self, path: &Path) -> Result<EncodedImage, (ErrorStage, String)> {
        let img = load_image(path).map_err(|e| (ErrorStage::Image, format!("{e:#}")))?;
        self.encode_image(&img)
    }

    fn encode_image(&self, img: &DynamicImage) -> Result<EncodedImage, (ErrorStage, String)> {
        let summary = self.engine.model.summary();
        let t = Instant::now();
        let pre = self.engine.image_processor.preprocess(img).map_err(|e| (ErrorStage::Preprocess, e.to_string()))?;
        let pixels = pre.to_tensor(self.device).map_err(|e| (ErrorStage::Preprocess, e.to_string()))?;
        let preprocess_ms = ms(t);
        let t = Instant::now();
        let features = self.engine.model.encode_image(&pixels, &mut NoProbe).map_err(|e| (ErrorStage::Inference, e.to_string()))?;
        let geometry = MapGeometry { h: summary.grid_h, w: summary.grid_w, crop: pre.crop, image_w: pre.image_w, image_h: pre.image_h };
        Ok(EncodedImage { features, pixels, geometry, preprocess_ms, encode_ms: ms(t) })
    }

    fn run_variants(
        &self,
        rows: &[&StudyRow],
        pass: Pass,
        image: &EncodedImage,
        attention: &mut AttentionFile,
    ) -> anyhow::Result<Vec<CaseRecord>> {
        let mut out = Vec::new();
        let mut prompts = Vec::new();
        for r in rows {
            match self.engine.prompter.encode(&r.question, None) {
                Ok(p) => prompts.push((*r, p)),
                Err(e) => out.push(self.error_record(r, pass, ErrorStage::Preprocess, e.to_string())),
            }
        }
        // The shared prefix: the longest common run of ids, leaving each variant a token of its own.
        let mut prefix_len = match prompts.as_slice() {
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
        // Never cut through an image block: its tokens attend to each other in both directions.
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
                prefix_len = 0; // the image is not all in the prefix: nothing worth sharing
            }
        }
        // The generic prompt's map (sinks, relative maps): once per image, as the shared prefix.
        let generic = match (&self.settings.trust, pass) {
            (Some(t), Pass::Image) if t.sinks => Some(self.generic_map(image).map_err(|e| format!("generic-prompt map: {e}"))),
            _ => None,
        };
        let mut shared_ms = 0.0;
        let prefix_cache = if prefix_len > 0 {
            let (_, p) = &prompts[0];
            let t = Instant::now();
            let mut cache = self.engine.model.new_cache();
            let ids = &p.input_ids[..prefix_len];
            match self.engine.model.prefill_from(ids, 0, &image.features, &mut cache, &mut NoProbe) {
                Ok(_) => {
                    shared_ms = ms(t);
                    Some(cache)
                }
                Err(_) => None, // fall back to full prefills
            }
        } else {
            None
        };
        let mut attention_maps: Vec<Option<Vec<f64>>> = Vec::new();
        for (i, (row, prompt)) in prompts.iter().enumerate() {
            let first = i == 0;
            let mut latency = Latency {
                preprocess_ms: if first { image.preprocess_ms } else { 0.0 },
                image_encode_ms: if first { image.encode_ms } else { 0.0 },
                ..Latency::default()
            };
            let record = self.run_case(
                row,
                pass,
                prompt,
                image,
                prefix_cache.as_ref().map(|c| (c, prefix_len)),
                generic.as_ref(),
                &mut latency,
                attention,
            );
            let mut record = match record {
                Ok((r, p)) => {
                    attention_maps.push(p);
                    r
                }
                Err((stage, message)) => {
                    attention_maps.push(None);
                    self.error_record(row, pass, stage, message)
                }
            };
            if first {
                record.latency.prefill_ms += shared_ms;
            }
            record.latency.total_ms = record.latency.preprocess_ms
                + record.latency.image_encode_ms
                + record.latency.prefill_ms
                + record.latency.decode_ms
                + record.latency.capture_ms;
            out.push(record);
        }
        if let Some(Ok(generic)) = &generic {
            // Records of CSV-problem rows came first; the rest follow `attention_maps`' order.
            let first = out.len() - attention_maps.len();
            add_sinks(&mut out[first..], &attention_maps, generic);
        }
        Ok(out)
    }

    fn generic_map(&self, image: &EncodedImage) -> Result<Vec<f64>, String> {
        let s = self.settings;
        let layers = s.layer_range.resolve(self.engine.model.summary().num_layers).map_err(|e| e.to_string())?;
        trust::generic_map(self.engine.model.as_ref(), self.engine.prompter.as_ref(), &image.features, &layers, s.head_fusion)
            .map_err(|e| e.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_case(
        &self,
        row: &StudyRow,
        pass: Pass,
        prompt: &crate::models::processor::llava::EncodedPrompt,
        image: &EncodedImage,
        prefix: Option<(&crate::models::kv_cache::KvCache, usize)>,
        generic: Option<&Result<Vec<f64>, String>>,
        latency: &mut Latency,
        attention: &mut AttentionFile,
    ) -> Result<CaseOutcome, (ErrorStage, String)> {
        let summary = self.engine.model.summary();
        let ids = &prompt.input_ids;
        let l = ids.len();
        let s = self.settings;
        let layers = s.layer_range.resolve(summary.num_layers).map_err(|e| (ErrorStage::Capture, e.to_string()))?;
        let term_rows = match &s.query_mode {
            QueryMode::Term(word) => {
                let pieces = self.engine.prompter.tokenizer().pieces(ids);
                let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
                let rows = term_positions(&refs, word);
                if rows.is_empty() {
                    return Err((ErrorStage::Capture, format!("the prompt has no token spelling {word:?}")));
                }
                rows
            }
            _ => Vec::new(),
        };
        let capture = pass == Pass::Image;
        // Rows inside the shared prefix were not captured there: take the full prefill.
        let prefix = prefix.filter(|(_, n)| term_rows.iter().all(|&p| p >= *n));
        let policy = CapturePolicy {
            layers: if capture { layers.clone() } else { Vec::new() },
            rows: RowSelection {
                prompt_positions: [term_rows.clone(), vec![l - 1]].concat(),
                decode_steps: s.query_mode == QueryMode::Answer,
            },
            prompt_len: l,
        };
        let mut recorder = AttentionRecorder::new(policy);
        let generation: Generation = greedy_from(
            self.engine.model.as_ref(),
            ids,
            &image.features,
            prefix.map(|(cache, len)| Prefix { cache, len }),
            s.max_new_tokens,
            &mut recorder,
        )
        .map_err(|e| (ErrorStage::Inference, e.to_string()))?;
        latency.prefill_ms = generation.prefill_ms;
        latency.decode_ms = generation.decode_ms;
        let tokenizer = self.engine.prompter.tokenizer();
        let answer_text = tokenizer.decode(generation.answer_ids(), true).map_err(|e| (ErrorStage::Inference, e.to_string()))?;
        let parsed = parse_answer(&answer_text);
        let margin = yes_no_margin(
            generation.prompt_last_logits(),
            &tokenizer.single_token_spellings("yes"),
            &tokenizer.single_token_spellings("no"),
        );
        let yes = tokenizer.single_token_spellings("yes");
        let no = tokenizer.single_token_spellings("no");
        let case = CaseInput {
            model: self.engine.model.as_ref(),
            input_ids: ids,
            pixel_values: &image.pixels,
            geometry: image.geometry,
            yes_ids: &yes,
            no_ids: &no,
        };
        let (map, attention_p, trust) = if capture {
            let t = Instant::now();
            let query_positions: Vec<usize> = match &s.query_mode {
                QueryMode::Query => vec![l - 1],
                QueryMode::Answer => (0..generation.answer_ids().len().max(1)).map(|k| l - 1 + k).collect(),
                QueryMode::Term(_) => term_rows,
            };
            let (m, p, fallback) = match self.store_map(&recorder, &layers, &query_positions, prompt, image, row, attention) {
                Ok((m, p)) => (m, p, None),
                // Attention could not be captured: Grad-CAM, else uniform, labelled as such.
                Err(e) => {
                    let like = self.provenance(&layers, &query_positions, image.geometry);
                    let fallback = trust::fallback_map(&case, &like, &e);
                    (self.store_method_map(&fallback, row, image, attention).map_err(|e| (ErrorStage::Capture, e))?, None, Some(fallback))
                }
            };
            latency.capture_ms = ms(t);
            let trust = s
                .trust
                .as_ref()
                .map(|settings| self.trust_record(&case, settings, &m, p.as_deref(), fallback, generic, row, image, attention));
            (Some(m), p, trust)
        } else {
            (None, None, None)
        };
        let mut record = self.base_record(row, pass);
        record.correct = row.answer.map(|truth| parsed == truth);
        record.answer_text = Some(answer_text);
        record.parsed_answer = Some(parsed);
        record.yes_no_margin = margin;
        record.latency = *latency;
        record.map = map;
        record.trust = trust;
        Ok((record, attention_p))
    }

    /// The attention map's provenance, as `store_map` writes it (for maps derived from it).
    fn provenance(&self, layers: &[usize], query_positions: &[usize], geometry: MapGeometry) -> MapProvenance {
        let s = self.settings;
        MapProvenance {
            model: self.name.to_string(),
            method: MapMethod::QueryToVisual,
            layer_range: s.layer_range.clone(),
            layers: layers.to_vec(),
            head_fusion: s.head_fusion,
            query_mode: s.query_mode.clone(),
            query_positions: query_positions.to_vec(),
            layers_without_image: Vec::new(),
            geometry,
            site: None,
            fallback_reason: None,
        }
    }

    /// Grad-CAM, the relative map, deletion tests and agreement of one case. A check that fails
    /// is a note in the record; the others are kept.
    #[allow(clippy::too_many_arguments)]
    fn trust_record(
        &self,
        case: &CaseInput<'_>,
        settings: &TrustSettings,
        map: &MapRecord,
        attention_p: Option<&[f64]>,
        fallback: Option<MethodValues>,
        generic: Option<&Result<Vec<f64>, String>>,
        row: &StudyRow,
        image: &EncodedImage,
        attention: &mut AttentionFile,
    ) -> TrustRecord {
        let mut out = TrustRecord::default();
        // The record's own map first: attention, or the fallback standing in for it (deletion
        // tests and agreement cover it too; sinks and the relative map need attention).
        let own = attention_p.map(|p| MethodValues { values: p.to_vec(), provenance: map.provenance.clone() }).or(fallback);
        let mut methods: Vec<MethodValues> = own.into_iter().collect();
        if settings.gradcam {
            // A fallback record's own map may already be the Grad-CAM.
            if map.provenance.method != MapMethod::Gradcam {
                match trust::gradcam_map(case, &map.provenance) {
                    Ok(m) => methods.push(m),
                    Err(e) => out.notes.push(format!("gradcam: {e}")),
                }
            }
        }
        if settings.sinks {
            match (generic, methods.first().filter(|m| m.provenance.method == MapMethod::QueryToVisual)) {
                (Some(Ok(g)), Some(att)) => match trust::relative(att, g) {
                    Ok(m) => methods.push(m),
                    Err(e) => out.notes.push(format!("relative map: {e}")),
                },
                (Some(Err(e)), _) => out.notes.push(e.clone()),
                _ => out.notes.push("relative map: no attention map".into()),
            }
        }
        if settings.faithfulness {
            let refs: Vec<&MethodValues> = methods.iter().collect();
            match trust::faithfulness(case, &refs, &settings.k_percents, settings.random_draws, trust::seed_of(&row.sample_id())) {
                Ok(f) => out.faithfulness = f,
                Err(e) => out.notes.push(format!("faithfulness: {e}")),
            }
        }
        out.agreement = trust::agreement(&methods.iter().collect::<Vec<_>>());
        // methods[0] is the record's own map, stored as `record.map` already.
        for m in methods.iter().skip(1) {
            match self.store_trust_map(m, row, image, attention) {
                Ok(mm) => out.maps.push(mm),
                Err(e) => out.notes.push(format!("{}: {e}", m.provenance.method)),
            }
        }
        out
    }

    /// Stores another method's map (normalised) with its metrics.
    fn store_trust_map(
        &self,
        m: &MethodValues,
        row: &StudyRow,
        image: &EncodedImage,
        attention: &mut AttentionFile,
    ) -> Result<MethodMap, String> {
        let g = image.geometry;
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

    /// A fallback map as the record's map: no attention rows behind it (`head_rows` is empty).
    fn store_method_map(
        &self,
        m: &MethodValues,
        row: &StudyRow,
        image: &EncodedImage,
        attention: &mut AttentionFile,
    ) -> Result<MapRecord, String> {
        let stored = self.store_trust_map(m, row, image, attention)?;
        let head_rows = attention.append(&[], vec![0]).map_err(|e| e.to_string())?;
        Ok(MapRecord {
            provenance: stored.provenance,
            image_share: 0.0,
            metrics: stored.metrics,
            roi: stored.roi,
            values: stored.values,
            head_rows,
        })
    }

    /// Fuses the captured rows into the record's map, and stores the map and the raw image rows.
    #[allow(clippy::too_many_arguments)]
    fn store_map(
        &self,
        recorder: &AttentionRecorder,
        layers: &[usize],
        query_positions: &[usize],
        prompt: &crate::models::processor::llava::EncodedPrompt,
        image: &EncodedImage,
        row: &StudyRow,
        attention: &mut AttentionFile,
    ) -> Result<(MapRecord, Option<Vec<f64>>), String> {
        let s = self.settings;
        let captured =
            fuse_captured(recorder, layers, query_positions, &prompt.image_positions, s.head_fusion).map_err(|e| e.to_string())?;
        let g = image.geometry;
        let map = AttentionMap::new(g.h, g.w, captured.fused.values.clone()).map_err(|e| e.to_string())?;
        let metrics = MapMetrics::of(&map).map_err(|e| e.to_string())?;
        let p = map.normalized().map_err(|e| e.to_string())?;
        let roi = match row.roi {
            Some(b) => roi_metrics(&p, &bbox_mask(g.h, g.w, &g.crop, &b)).map_err(|e| e.to_string())?,
            None => None,
        };
        // [rows, layers, heads, image tokens]: the raw probabilities, for re-fusing later.
        let heads = self.engine.model.summary().num_heads;
        let n = prompt.image_positions.len();
        let mut head_rows = Vec::with_capacity(query_positions.len() * layers.len() * heads * n);
        for &pos in query_positions {
            for &layer in layers {
                let r = recorder.row(layer, pos).ok_or_else(|| format!("row {pos} of layer {layer} was not captured"))?;
                for h in 0..r.heads {
                    let head = r.head(h);
                    head_rows.extend(prompt.image_positions.iter().map(|&k| head[k]));
                }
            }
        }
        let values32: Vec<f32> = captured.fused.values.iter().map(|&v| v as f32).collect();
        let values = attention.append(&values32, vec![g.h, g.w]).map_err(|e| e.to_string())?;
        let head_rows = attention.append(&head_rows, vec![query_positions.len(), layers.len(), heads, n]).map_err(|e| e.to_string())?;
        let record = MapRecord {
            provenance: MapProvenance {
                model: self.name.to_string(),
                method: MapMethod::QueryToVisual,
                layer_range: s.layer_range.clone(),
                layers: captured.layers_used,
                head_fusion: s.head_fusion,
                query_mode: s.query_mode.clone(),
                query_positions: query_positions.to_vec(),
                layers_without_image: captured.layers_without_image,
                geometry: g,
                site: None,
                fallback_reason: None,
            },
            image_share: captured.fused.image_share,
            metrics,
            roi,
            values,
            head_rows,
        };
        Ok((record, Some(p)))
    }

    fn base_record(&self, row: &StudyRow, pass: Pass) -> CaseRecord {
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
            answer_text: None,
            parsed_answer: None,
            correct: None,
            yes_no_margin: None,
            latency: Latency::default(),
            map: None,
            error: None,
            trust: None,
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

    fn error_record(&self, row: &StudyRow, pass: Pass, stage: ErrorStage, message: String) -> CaseRecord {
        CaseRecord { error: Some(CaseError { stage, message }), ..self.base_record(row, pass) }
    }
}

/// A case's record and its normalised attention map (kept in memory for the study's sinks).
type CaseOutcome = (CaseRecord, Option<Vec<f64>>);

/// Sinks of one study's image-pass records: cells above `SINK_FACTOR / n` in every variant's map
/// and in the generic map; each record gets them, their mass and its metrics without them.
fn add_sinks(records: &mut [CaseRecord], maps: &[Option<Vec<f64>>], generic: &[f64]) {
    let mut all: Vec<&[f64]> = maps.iter().flatten().map(Vec::as_slice).collect();
    if all.is_empty() {
        return;
    }
    all.push(generic);
    let cells = sink_cells(&all, SINK_FACTOR);
    for (record, p) in records.iter_mut().zip(maps) {
        let (Some(p), Some(trust)) = (p, record.trust.as_mut()) else { continue };
        trust.sinks = Some(SinkCheck {
            factor: SINK_FACTOR,
            generic_prompt: GENERIC_PROMPT.to_string(),
            cells: cells.clone(),
            mass: cells.iter().fold(0.0, |acc, &c| acc + p[c]),
            metrics_without: without_cells(p, &cells).ok().map(|q| MapMetrics::of_probs(&q)),
        });
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
