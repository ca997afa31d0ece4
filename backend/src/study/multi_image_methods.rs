//! The other methods' maps of a multi-image row (issue 21), split per image like its attention:
//! Grad-CAM over every image's tokens at once, the relative map (the question's attention over
//! all images against the generic prompt's over the same images) and occlusion one image at a
//! time with the others intact. Each image gets each method's map on its own grid with its
//! share of the method's mass (`images[].methods`); the record's own `trust` and `grounding`
//! hold the current image's parts, as a single-image row's hold its image's, and deletion
//! faithfulness deletes cells of the current image only, the others intact (as do the null
//! edits, which run with the case).
//!
//! Shares, per method, over the prompt's images:
//! - Grad-CAM: each image's part of the (rectified) Grad-CAM mass;
//! - relative: each image's part of the relative map made over all image tokens;
//! - occlusion: each image's positive support (answer drops when its cells are hidden) over all
//!   images' positive support.

use radlens_shared::fusion::MapMethod;
use radlens_shared::geometry::MapGeometry;
use radlens_shared::grounding::CaseGrounding;
use radlens_shared::record::{CaseRecord, ImageMethodMap, TrustRecord};

use super::multi_image::{MultiImageCase, RowImageEncoded};
use super::plan::StudyRow;
use super::run_dir::AttentionFile;
use super::runner::ModelRun;
use crate::case::grounding::{self, Boxes, GroundingOutcome};
use crate::case::multi_image::{
    ImageMap, current_index, current_part, deletion_on_image, generic_map_multi, gradcam_by_image, occlusion_by_image, occlusion_per_image,
    relative_by_image,
};
use crate::case::occlusion::{MarginProbe, OccludedImages, OcclusionMap, OcclusionSettings};
use crate::case::trust::{self, MethodValues};
use crate::case::{CaseImage, CasePlan, CaseSpec};
use crate::models::error::ModelError;
use crate::models::processor::{MultiImagePrompt, PromptImage};

/// What a multi-image row's questions share (made once per row group, image pass only).
#[derive(Default)]
pub(super) struct SharedMethods {
    /// The generic prompt's map over every image token (prompt order), when sinks are asked.
    pub(super) generic: Option<Result<Vec<f64>, String>>,
    /// Each image's occluded encodings (prompt order), when grounding's occlusion is asked.
    pub(super) occluded: Option<Result<Vec<OccludedImages>, String>>,
}

/// One method's maps of every image, and the current image's part as a map of its own.
struct Split {
    per_image: Vec<ImageMethodMap>,
    current: Option<MethodValues>,
}

impl ModelRun<'_> {
    /// The generic map and the occluded images of a row's images, as `requested` asks.
    pub(super) fn shared_methods(
        &self,
        plan: &CasePlan,
        requested: &CaseSpec,
        request: &[PromptImage],
        prompt: &MultiImagePrompt,
        images: &[RowImageEncoded],
        features: &CaseImage,
    ) -> SharedMethods {
        let generic = requested.trust.as_ref().filter(|t| t.sinks).map(|_| {
            generic_map_multi(self.engine, plan, request, prompt, &features.features).map_err(|e| format!("generic-prompt map: {e}"))
        });
        let occluded = requested.grounding.filter(|g| g.occlusion).map(|g| {
            let settings = OcclusionSettings { grid: g.occlusion_grid, batch: g.occlusion_batch };
            prompt
                .order
                .iter()
                .map(|&i| {
                    OccludedImages::encode(self.engine.model.as_ref(), &images[i].image.pixels, settings)
                        .map_err(|e| format!("occlusion of the {} image: {e}", images[i].role))
                })
                .collect()
        });
        SharedMethods { generic, occluded }
    }

    /// The methods `multi.requested` asks for, on a case whose attention is split per image
    /// (`fused`: the query rows' fused attention over every image token, prompt order; `own`:
    /// the current image's map). Each method's per-image maps go to `record.images[k].methods`;
    /// the current image's parts to `record.trust` and `record.grounding`. A method that fails
    /// is a note.
    pub(super) fn image_methods(
        &self,
        row: &StudyRow,
        multi: &MultiImageCase<'_>,
        own: &MethodValues,
        fused: &[f64],
        record: &mut CaseRecord,
        attention: &mut AttentionFile,
    ) {
        let spec = multi.requested;
        if spec.trust.is_none() && spec.grounding.is_none() {
            return;
        }
        let m = multi.prompt;
        let geometries: Vec<MapGeometry> = m.order.iter().map(|&i| multi.images[i].image.geometry).collect();
        let current = current_index(m);
        let model = self.engine.model.as_ref();
        let input_ids = &m.prompt.input_ids;
        let tokenizer = self.engine.prompter.tokenizer();
        let (yes, no) = (tokenizer.single_token_spellings("yes"), tokenizer.single_token_spellings("no"));
        let mut notes = Vec::new();
        let mut splits: Vec<Split> = Vec::new();
        let mut store = |what: &str, maps: Result<Vec<ImageMap>, String>, notes: &mut Vec<String>| match maps
            .and_then(|maps| self.store_parts(maps, current, attention))
        {
            Ok(s) => splits.push(s),
            Err(e) => notes.push(format!("{what} per image: {e}")),
        };

        if spec.trust.as_ref().is_some_and(|t| t.gradcam) {
            let pixels: Vec<_> = m.order.iter().map(|&i| &multi.images[i].image.pixels).collect();
            let maps = gradcam_by_image(model, m, &pixels, multi.features, &yes, &no, &own.provenance, &geometries);
            store("gradcam", maps, &mut notes);
        }

        match &multi.shared.generic {
            Some(Ok(generic)) => store("relative map", relative_by_image(fused, generic, &own.provenance, m, &geometries), &mut notes),
            Some(Err(e)) => notes.push(e.clone()),
            None => {}
        }

        // The whole prompt's margin with any image's features replaced: occlusion and deletion.
        let faithfulness = spec.trust.as_ref().filter(|t| t.faithfulness);
        let probe = (multi.shared.occluded.is_some() || faithfulness.is_some())
            .then(|| MarginProbe::new(model, input_ids, model.summary().image_token_id, multi.features, &yes, &no));
        let parts: Vec<_> = m.order.iter().map(|&i| multi.images[i].image.features.clone()).collect();
        let mut support: Option<OcclusionMap> = None;
        match &multi.shared.occluded {
            Some(Ok(occluded)) => {
                let occluded: Vec<&OccludedImages> = occluded.iter().collect();
                let maps = match &probe {
                    Some(Ok(probe)) => occlusion_per_image(&parts, &occluded, probe.margin, |f| probe.margin_of(f)),
                    Some(Err(e)) => Err(ModelError::Invalid(e.to_string())),
                    None => Err(ModelError::Invalid("no margin probe".into())),
                };
                match maps {
                    Ok(maps) => {
                        store("occlusion", occlusion_by_image(&maps, &own.provenance, m, &geometries), &mut notes);
                        support = Some(maps[current].clone());
                    }
                    Err(e) => notes.push(format!("occlusion: {e}")),
                }
            }
            Some(Err(e)) => notes.push(e.clone()),
            None => {}
        }

        let mut trust = TrustRecord { notes, ..TrustRecord::default() };
        let mut others: Vec<MethodValues> = Vec::new();
        for split in splits {
            let method = split.per_image.first().map(|p| p.provenance.method);
            for (image, map) in record.images.iter_mut().zip(split.per_image) {
                image.methods.push(map);
            }
            match split.current {
                // Occlusion's current part enters through grounding, as for a single-image row.
                Some(c) if c.provenance.method != MapMethod::Occlusion => others.push(c),
                Some(_) => {}
                None => trust.notes.push(format!(
                    "{}: the current image has none of its mass; its per-image map is a labelled uniform fallback",
                    method.map_or_else(|| "a method".to_string(), |m| m.to_string())
                )),
            }
        }
        for m in &others {
            match self.store_method_map(m, row, attention) {
                Ok(mm) => trust.maps.push(mm),
                Err(e) => trust.notes.push(format!("{}: {e}", m.provenance.method)),
            }
        }
        let all: Vec<&MethodValues> = std::iter::once(own).chain(&others).collect();
        trust.agreement = trust::agreement(&all);
        // Deletion on the current image, the others intact; its maps as a single-image row's.
        if let (Some(settings), Some(probe)) = (faithfulness, &probe) {
            let image = &multi.images[m.order[current]].image;
            let g = image.geometry;
            let seed = trust::seed_of(&row.sample_id());
            match probe
                .as_ref()
                .map_err(|e| ModelError::Invalid(e.to_string()))
                .and_then(|probe| deletion_on_image(model, probe, &parts, current, &image.pixels, (g.h, g.w), &all, settings, seed))
            {
                Ok(f) => trust.faithfulness = f,
                Err(e) => trust.notes.push(format!("faithfulness on the current image: {e}")),
            }
        }
        if let Some(settings) = spec.grounding {
            // The CSV's boxes are on the current image: its maps get the box figures.
            let g = own.provenance.geometry;
            let boxes = Boxes {
                roi: row.roi.filter(|b| b.inside_image(g.image_w, g.image_h)),
                confound: row.confound.filter(|b| b.inside_image(g.image_w, g.image_h)),
            };
            let pixels = &multi.images[m.order[current]].image.pixels;
            let mut out = GroundingOutcome::default();
            if settings.occlusion && support.is_none() {
                out.record.notes.push("occlusion: no occlusion support for the current image (see the trust notes)".into());
            }
            grounding::figures(&mut out, support.as_ref(), pixels, &all, boxes);
            // The null edits ran with the case (the current image edited, the others kept); their
            // figures and notes move to this grounding.
            match record.grounding.take() {
                Some(earlier) => {
                    let own_method = own.provenance.method;
                    let edits = earlier.maps.into_iter().find(|g| g.method == own_method).map(|g| g.figures.null_edits);
                    if let (Some(edits), Some(entry)) = (edits, out.record.maps.iter_mut().find(|g| g.method == own_method)) {
                        entry.figures.null_edits = edits;
                    }
                    out.record.notes.extend(earlier.notes);
                }
                None if settings.null_edits => out.record.notes.push("null edits: not run on this row's images".into()),
                None => {}
            }
            if let Some(o) = &out.occlusion_map {
                match self.store_method_map(o, row, attention) {
                    Ok(mm) => trust.maps.push(mm),
                    Err(e) => trust.notes.push(format!("occlusion: {e}")),
                }
            }
            record.grounding = Some(out.record);
        }
        record.trust = Some(trust);
    }

    /// Stores each image's map of one method (prompt order, as `record.images`). Returns them,
    /// and the current image's as a map of its own (`None` when it has no mass).
    fn store_parts(&self, maps: Vec<ImageMap>, current: usize, attention: &mut AttentionFile) -> Result<Split, String> {
        let mut out = Split { per_image: Vec::with_capacity(maps.len()), current: None };
        for (k, map) in maps.into_iter().enumerate() {
            let g = map.provenance.geometry;
            let values32: Vec<f32> = map.values.iter().map(|&v| v as f32).collect();
            let stored = attention.append(&values32, vec![g.h, g.w]).map_err(|e| e.to_string())?;
            if k == current && map.provenance.fallback_reason.is_none() {
                out.current = Some(MethodValues { values: map.values, provenance: map.provenance.clone() });
            }
            out.per_image.push(ImageMethodMap {
                image_mass_share: map.share,
                provenance: map.provenance,
                metrics: map.metrics,
                values: stored,
            });
        }
        Ok(out)
    }

    /// The checks a multi-image row does not get, said in its record: every method when its
    /// attention could not be split per image.
    pub(super) fn note_unrun_checks(&self, requested: &CaseSpec, record: &mut CaseRecord) {
        if record.images.is_empty() && (requested.trust.is_some() || requested.grounding.is_some()) {
            let why = "not run: the row's attention could not be split per image (see `map.provenance`)";
            record
                .trust
                .get_or_insert_with(TrustRecord::default)
                .notes
                .push(format!("Grad-CAM, deletion, sinks and the relative map {why}"));
            if requested.grounding.is_some() {
                record.grounding.get_or_insert_with(CaseGrounding::default).notes.push(format!("grounding {why}"));
            }
        }
    }

    /// Sinks of a multi-image row group's current-image maps, against the generic map's
    /// current-image part (renormalised), as a single-image row's variants are checked.
    pub(super) fn multi_image_sinks(
        &self,
        shared: &SharedMethods,
        prompt: &MultiImagePrompt,
        own_maps: &[Option<Vec<f64>>],
        records: &mut [CaseRecord],
    ) {
        let Some(generic) = &shared.generic else { return };
        let part = generic.as_ref().map_err(Clone::clone).and_then(|g| current_part(g, prompt));
        let generic = match part {
            Ok(g) => g,
            Err(e) => {
                for t in records.iter_mut().filter_map(|r| r.trust.as_mut()) {
                    t.notes.push(format!("sinks: {e}"));
                }
                return;
            }
        };
        let maps: Vec<Option<&[f64]>> = own_maps.iter().map(|m| m.as_deref()).collect();
        for (record, sinks) in records.iter_mut().zip(trust::sink_checks(&maps, &generic)) {
            if let (Some(sinks), Some(t)) = (sinks, record.trust.as_mut()) {
                t.sinks = Some(sinks);
            }
        }
    }
}
