//! Rows with several images (issue 21): each image encoded once, the prompt built as the
//! model's template places them, the features concatenated in the prompt's order, and every
//! case's attention split per image on each image's own grid with its share of the mass.

use candle_core::Tensor;
use radlens_shared::fusion::MapProvenance;
use radlens_shared::geometry::MapGeometry;
use radlens_shared::record::{CaseRecord, ConditionRecord, ErrorStage, GroundingSettings, ImageMapRecord, Pass};

use super::conditions::blank_image;
use super::multi_image_methods::SharedMethods;
use super::plan::{RowImage, StudyRow};
use super::run_dir::AttentionFile;
use super::runner::{CaseFailure, ModelRun, finish_latency, group_by_images};
use crate::case::multi_image::{attention_by_image, combined_image, current_index, current_prompt, request_rank};
use crate::case::null_edit::EditedImage;
use crate::case::trust;
use crate::case::{Capture, Case, CaseImage, CasePlan, CaseSpec};
use crate::models::concat_features;
use crate::models::generate::Prefix;
use crate::models::probe::AttentionRecorder;
use crate::models::processor::preprocess::load_image;
use crate::models::processor::{EncodedPrompt, ImageRole, MultiImagePrompt, PromptImage};

/// One image of a multi-image row (issue 21), encoded: its role, its path as the CSV names it,
/// and its encoding (with its own map geometry).
pub(super) struct RowImageEncoded {
    pub(super) role: ImageRole,
    pub(super) path: String,
    pub(super) image: CaseImage,
}

/// A multi-image case's prompt and images, for splitting its attention per image.
pub(super) struct MultiImageCase<'a> {
    pub(super) prompt: &'a MultiImagePrompt,
    /// In request order (`prompt.order` indexes it).
    pub(super) images: &'a [RowImageEncoded],
    /// The checks the study asked for (the case itself runs without them; see
    /// [`super::multi_image_methods`]).
    pub(super) requested: &'a CaseSpec,
    /// Every image's features, concatenated in prompt order.
    pub(super) features: &'a Tensor,
    /// What the row's questions share: the generic map and the occluded images.
    pub(super) shared: &'a SharedMethods,
}

impl ModelRun<'_> {
    /// Loads and encodes a row's other images; a missing or unreadable one is the row's error,
    /// naming its column and file.
    pub(super) fn encode_extra_images(&self, extras: &[RowImage]) -> Result<Vec<RowImageEncoded>, CaseFailure> {
        extras
            .iter()
            .map(|e| {
                let img = load_image(&self.images.join(&e.path)).map_err(|err| (ErrorStage::Image, format!("{}: {err:#}", e.column)))?;
                let image = self.encode_image(&img).map_err(|(stage, message)| (stage, format!("{}: {message}", e.column)))?;
                Ok(RowImageEncoded { role: e.role, path: e.path.clone(), image })
            })
            .collect()
    }

    /// A study's rows over several images (issue 21): the prompt places them as the model's
    /// template does (asked for in the order prior, current, lateral; MAIRA-2 reorders), the
    /// features are concatenated in the prompt's order (what `encode_image_list` returns), and
    /// each case's own map is the current image's; the record adds every image's map on its own
    /// grid with its share of the attention mass, and the other methods' maps asked for split
    /// the same way ([`super::multi_image_methods`]); a model that takes one image makes each
    /// row an error record. `images` holds the current image (and `edits` its null edits).
    pub(super) fn run_multi_image(
        &self,
        plan: &CasePlan,
        rows: &[&StudyRow],
        pass: Pass,
        mut images: Vec<RowImageEncoded>,
        edits: Option<&[EditedImage]>,
        attention: &mut AttentionFile,
    ) -> anyhow::Result<Vec<CaseRecord>> {
        let requested = &plan.spec;
        // The case runs the null edits alone (on the current image, in place among the others);
        // every other check runs per image after it (`multi_image_methods`).
        let null_edits = requested.grounding.filter(|g| g.null_edits && edits.is_some());
        let grounding = null_edits.map(|g| GroundingSettings { occlusion: false, ..g });
        let plan = CasePlan { spec: CaseSpec { trust: None, grounding, ..plan.spec.clone() }, ..plan.clone() };
        images.sort_by_key(|i| request_rank(i.role));
        let request: Vec<PromptImage> = images.iter().map(|i| PromptImage { role: i.role, tokens: i.image.image_tokens() }).collect();
        let mut out = Vec::new();
        let mut prompts: Vec<(&StudyRow, EncodedPrompt)> = Vec::new();
        let mut multi: Vec<MultiImagePrompt> = Vec::new();
        for r in rows {
            match self.engine.prompter.encode_images(&r.question, None, &request) {
                Ok(m) if multi.first().is_none_or(|first| first.order == m.order) => {
                    prompts.push((*r, m.prompt.clone()));
                    multi.push(m);
                }
                Ok(_) => out.push(self.error_record(
                    r,
                    pass,
                    ErrorStage::Preprocess,
                    "the images' order differs between the study's prompts".into(),
                )),
                Err(e) => out.push(self.error_record(
                    r,
                    pass,
                    ErrorStage::Preprocess,
                    format!("{} images ({}): {e}", request.len(), roles_of(&request)),
                )),
            }
        }
        let Some(first) = multi.first() else { return Ok(out) };
        if !images.iter().any(|i| i.role == ImageRole::Current) {
            anyhow::bail!("no current image");
        }
        let in_prompt_order: Vec<Tensor> = first.order.iter().map(|&i| images[i].image.features.clone()).collect();
        let combined = combined_image(&images.iter().map(|i| &i.image).collect::<Vec<_>>(), first)?;
        // Each null edit of the current image with the other images' features kept.
        let edits: Option<Vec<EditedImage>> = edits.filter(|_| null_edits.is_some()).map(|edits| {
            let j = current_index(first);
            edits
                .iter()
                .map(|e| EditedImage {
                    edit: e.edit,
                    image: e.image.clone().and_then(|edited| {
                        let mut parts = in_prompt_order.clone();
                        parts[j] = edited.features.clone();
                        let features = concat_features(&parts).map_err(|err| format!("{}: {err}", e.edit))?;
                        Ok(CaseImage { features, ..edited })
                    }),
                })
                .collect()
        });
        // Every image is inside the shared prefix or none is (see `shared_prefix_len`).
        let prefix_len = self.shared_prefix_len(&prompts);
        let (prefix_cache, shared_ms) = self.prefix_cache(&prompts, prefix_len, &combined);
        // The generic map and the occluded images, once for all the row's questions.
        let shared = if pass == Pass::Image {
            self.shared_methods(&plan, requested, &request, first, &images, &combined)
        } else {
            SharedMethods::default()
        };
        let mut own_maps: Vec<Option<Vec<f64>>> = Vec::new();
        for (i, ((row, _), m)) in prompts.iter().zip(&multi).enumerate() {
            // The case's own map is the current image's: its prompt names only that image's tokens.
            let own_prompt = current_prompt(m);
            let g = combined.geometry;
            let roi = row.roi.filter(|b| b.inside_image(g.image_w, g.image_h));
            let case = Case {
                engine: self.engine,
                plan: &plan,
                image: &combined,
                prompt: &own_prompt,
                prefix: prefix_cache.as_ref().map(|cache| Prefix { cache, len: prefix_len }),
                capture: if pass == Pass::Image { Capture::Map } else { Capture::Nothing },
                generic: None,
                seed: trust::seed_of(&row.sample_id()),
                roi,
                confound: row.confound.filter(|b| b.inside_image(g.image_w, g.image_h)),
                occluded: None,
                null_edits: edits.as_deref(),
            };
            let multi_case = MultiImageCase { prompt: m, images: &images, requested, features: &combined.features, shared: &shared };
            let mut record = match self.record_of(row, pass, case, Some(multi_case), attention) {
                Ok((record, own)) => {
                    own_maps.push(own);
                    record
                }
                Err((stage, message)) => {
                    own_maps.push(None);
                    self.error_record(row, pass, stage, message)
                }
            };
            if record.error.is_none() && pass == Pass::Image {
                self.note_unrun_checks(requested, &mut record);
            }
            finish_latency(&mut record, (i == 0).then_some(&combined), shared_ms);
            out.push(record);
        }
        // Sinks on the current image's maps, as a single-image row's (records of prompt
        // problems came first; the rest follow `own_maps`' order).
        let first_case = out.len() - own_maps.len();
        self.multi_image_sinks(&shared, first, &own_maps, &mut out[first_case..]);
        Ok(out)
    }

    /// `prior_blank` and `prior_swap` (issue 21): rows with a prior run with the prior replaced
    /// by the blank image (encoded once per model) or by their study's prior partner's prior,
    /// their other images as they are, without capture. `prior_swap` has no truth: the change
    /// asked about is between two patients' images.
    pub(super) fn run_prior_condition(
        &self,
        plan: &CasePlan,
        rows: &[&StudyRow],
        pass: Pass,
        blank: &mut Option<CaseImage>,
        attention: &mut AttentionFile,
    ) -> anyhow::Result<Vec<CaseRecord>> {
        let mut out = Vec::new();
        for rows in group_by_images(rows.iter().copied()) {
            let partner = match pass {
                Pass::PriorSwap => {
                    let partner = self.partners.get(&rows[0].study_id).map(|p| p.prior.clone());
                    match partner.unwrap_or_else(|| Err("the study has no swap partners".into())) {
                        Ok(p) => Some(p),
                        Err(why) => {
                            out.extend(rows.iter().map(|r| self.not_run_record(r, pass, why.clone())));
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let prior = match &partner {
                Some(p) => load_image(&self.images.join(&p.image))
                    .map_err(|e| (ErrorStage::Image, format!("prior_image_path of study {}: {e:#}", p.study)))
                    .and_then(|img| self.encode_image(&img)),
                None => match blank {
                    Some(b) => Ok(b.reused()),
                    None => self.encode_image(&blank_image()).inspect(|e| *blank = Some(e.reused())),
                },
            };
            let others: Vec<RowImage> = rows[0].extra_images.iter().filter(|e| e.role != ImageRole::Prior).cloned().collect();
            let images = prior.and_then(|prior| {
                let current = load_image(&self.images.join(&rows[0].image_path))
                    .map_err(|e| (ErrorStage::Image, format!("{e:#}")))
                    .and_then(|img| self.encode_image(&img))?;
                let mut extras = self.encode_extra_images(&others)?;
                let path = partner.as_ref().map_or_else(|| "blank".to_string(), |p| p.image.clone());
                extras.push(RowImageEncoded { role: ImageRole::Prior, path, image: prior });
                Ok((current, extras))
            });
            let records = match images {
                Ok((current, extras)) => {
                    let current = RowImageEncoded { role: ImageRole::Current, path: rows[0].image_path.clone(), image: current };
                    self.run_multi_image(plan, &rows, pass, extras.into_iter().chain([current]).collect(), None, attention)?
                }
                Err((stage, message)) => rows.iter().map(|r| self.error_record(r, pass, stage, message.clone())).collect(),
            };
            let condition = ConditionRecord {
                partner_study: partner.as_ref().map(|p| p.study.clone()),
                prior_image: partner.map(|p| p.image),
                ..ConditionRecord::default()
            };
            out.extend(records.into_iter().map(|r| {
                let swapped = pass == Pass::PriorSwap;
                CaseRecord {
                    condition: Some(condition.clone()),
                    ground_truth: if swapped { None } else { r.ground_truth },
                    correct: if swapped { None } else { r.correct },
                    ..r
                }
            }));
        }
        Ok(out)
    }

    /// A multi-image case's attention split per image ([`attention_by_image`]): each image's map
    /// on its own grid with its share of the mass, stored; and the fused values over all image
    /// tokens.
    pub(super) fn store_image_maps(
        &self,
        plan: &CasePlan,
        recorder: &AttentionRecorder,
        own: &MapProvenance,
        multi: &MultiImageCase<'_>,
        attention: &mut AttentionFile,
    ) -> Result<(Vec<ImageMapRecord>, Vec<f64>), String> {
        let grids: Vec<MapGeometry> = multi.prompt.order.iter().map(|&i| multi.images[i].image.geometry).collect();
        let (maps, fused) = attention_by_image(recorder, plan, own, multi.prompt, &grids)?;
        let mut out = Vec::with_capacity(maps.len());
        for (map, &i) in maps.into_iter().zip(&multi.prompt.order) {
            let g = map.provenance.geometry;
            let values32: Vec<f32> = map.values.iter().map(|&v| v as f32).collect();
            let stored = attention.append(&values32, vec![g.h, g.w]).map_err(|e| e.to_string())?;
            out.push(ImageMapRecord {
                role: map.role.to_string(),
                image: multi.images[i].path.clone(),
                image_mass_share: map.share,
                provenance: map.provenance,
                metrics: map.metrics,
                values: stored,
                methods: Vec::new(),
            });
        }
        Ok((out, fused))
    }
}

/// `prior, current` for the error message of a model that takes fewer images.
fn roles_of(images: &[PromptImage]) -> String {
    images.iter().map(|i| i.role.as_str()).collect::<Vec<_>>().join(", ")
}
