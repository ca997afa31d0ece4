//! The study's numbers, recomputed from `records.jsonl` alone: per model accuracy, flip rate,
//! consistency, `cs_k` and image reliance with cluster-bootstrap intervals, answer margins,
//! latencies, attention-map summaries, cross-model map divergence and paired McNemar tests.
//!
//! Every definition is the spec's (`fixtures/spec/metrics.md`) and every statistic goes through
//! the shared crate (`radlens_shared::stats`, `metrics`, `geometry`), so the dashboard and this
//! report can never disagree. What this module adds is the bookkeeping around them:
//!
//! - Records are deduplicated by [`CaseRecord::key`] (the first one is kept: a resumed run that
//!   wrote a row twice must not count it twice) and sorted, so the output depends on the set of
//!   records only, never on their order in the file.
//! - Error records are counted (per model and pass) and excluded from every statistic; so are
//!   rows without a parsed answer or a yes/no ground truth. [`Analysis::notes`] says so.
//! - Each statistic is a ratio of per-study sums ([`ClusterRatio`]); its interval is the seeded
//!   cluster bootstrap of the manifest's settings, with the study as the unit, or the subject
//!   when the unit is `subject` (parts are relabelled with the study's subject id and merged).
//!   Every interval uses the same seed: common random numbers, so intervals of related
//!   statistics are comparable and the whole analysis is reproducible.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use radlens_shared::answer::{Answer, parse_answer};
use radlens_shared::fusion::MapMethod;
use radlens_shared::geometry::resample;
use radlens_shared::metrics::{consistency, js_divergence};
use radlens_shared::record::{AgreementSummary, Faithfulness, FaithfulnessSummary, SinkCheck, SinkSummary, TrustRecord, TrustSummary};
use radlens_shared::record::{
    Analysis, CaseRecord, CrossModelMaps, CrossModelRow, FlipMaps, GroupStats, ImageReliance, LatencySummary, MapGroup, MapSummary,
    MarginSummary, ModelAnalysis, ModelComparison, Pass, QuadrantShare, RecordCounts, RoiSummary, RunManifest, SCHEMA_VERSION,
    StudyDisagreement, StudySummary, Summary, TensorRef,
};
use radlens_shared::stats::{
    BootstrapConfig, ClusterRatio, DEFAULT_LEVEL, Interval, Study, UNIT_SUBJECT, VariantRow, cluster_bootstrap, consensus_score,
    flip_parts, flip_parts_for_strategy, full_consistency_parts, group_studies, mcnemar, pair_rows, percentile_linear,
};
use radlens_shared::{AttentionMap, MetricError};
use thiserror::Error;

use super::run_dir::{MANIFEST, RECORDS, RunDir, RunDirError};

#[derive(Debug, Error)]
pub enum AnalysisError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// The records or the manifest cannot be analysed as they are; `path` names the file.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl AnalysisError {
    fn records(message: impl Into<String>) -> Self {
        Self::Invalid { path: PathBuf::from(RECORDS), message: message.into() }
    }

    fn manifest(message: impl Into<String>) -> Self {
        Self::Invalid { path: PathBuf::from(MANIFEST), message: message.into() }
    }

    /// [`analyze_records`] names files relative to the run directory; this anchors them.
    pub fn in_dir(self, dir: &RunDir) -> Self {
        match self {
            Self::Invalid { path, message } if path.is_relative() => Self::Invalid { path: dir.root().join(path), message },
            other => other,
        }
    }
}

type Result<T> = std::result::Result<T, AnalysisError>;

/// Label of the studies whose base question names no finding, in [`ModelAnalysis::by_finding`].
pub const NO_FINDING: &str = "(none)";

/// Reads the run directory's manifest, records and maps and computes its [`Analysis`].
/// Nothing is written: `radlens report` writes it with the figures and the report.
pub fn analyze(dir: &RunDir) -> Result<Analysis> {
    let manifest = dir.read_manifest()?;
    let records = dir.read_records()?;
    analyze_records(&manifest, &records, |t| dir.read_f32(t)).map_err(|e| e.in_dir(dir))
}

/// The analysis of `records` under `manifest`; `load_map` reads a map's stored values (the run
/// directory's attention store, or anything a test provides). A map that cannot be read or is
/// not a valid attention map is left out of the map statistics with a note; it does not stop
/// the analysis, since the answers remain valid.
pub fn analyze_records<E, F>(manifest: &RunManifest, records: &[CaseRecord], mut load_map: F) -> Result<Analysis>
where
    E: std::error::Error,
    F: FnMut(&TensorRef) -> std::result::Result<Vec<f32>, E>,
{
    let (records, duplicates) = dedupe_and_sort(records);
    let mut notes = Vec::new();
    if duplicates > 0 {
        notes.push(format!("{duplicates} duplicate records (same sample, model and pass) were ignored; the first of each was kept."));
    }
    let boot = Boot::new(manifest, &records, &mut notes)?;
    let model_names = model_order(manifest, &records, &mut notes);
    let counts = record_counts(records.len() + duplicates, duplicates, &records);
    if counts.errors > 0 {
        let blank = records.iter().filter(|r| r.error.is_some() && r.pass == Pass::BlankImage).count();
        notes.push(format!(
            "{} error records ({} image pass, {} text-only pass) are counted but excluded from every statistic.",
            counts.errors,
            counts.errors - blank,
            blank
        ));
    }
    if counts.unscorable > 0 {
        notes.push(format!(
            "{} image-pass records without an error have no parsed answer or no yes/no ground truth and are left out of the answer statistics.",
            counts.unscorable
        ));
    }

    let maps = load_maps(&records, &mut load_map, &mut notes);
    let mut models = Vec::with_capacity(model_names.len());
    let mut studies = Vec::new();
    let mut per_model_rows = BTreeMap::new();
    for name in &model_names {
        let random_weights = manifest.models.iter().any(|m| &m.name == name && m.random_weights);
        let data = ModelData::new(name, &records, &mut notes)?;
        let summaries = study_summaries(&data, &maps, &mut notes);
        models.push(analyze_model(&data, random_weights, &boot, &maps, &summaries)?);
        studies.extend(summaries);
        per_model_rows.insert(name.clone(), data.rows.clone());
    }
    studies.sort_by(|a, b| (&a.study_id, &a.model).cmp(&(&b.study_id, &b.model)));

    let mut comparisons = Vec::new();
    let mut cross_model = Vec::new();
    for (i, a) in model_names.iter().enumerate() {
        for b in &model_names[i + 1..] {
            comparisons.push(compare_models(a, b, &per_model_rows[a], &per_model_rows[b], &boot)?);
            cross_model.push(cross_model_maps(a, b, manifest.capture.common_grid, &records, &maps, &mut notes));
        }
    }
    let disagreements = disagreements(&records, &studies, &per_model_rows, &cross_model);

    Ok(Analysis {
        schema_version: SCHEMA_VERSION,
        run_id: manifest.run_id.clone(),
        bootstrap: manifest.bootstrap.clone(),
        random_weights: models.iter().any(|m| m.random_weights),
        records: counts,
        models,
        studies,
        comparisons,
        cross_model,
        disagreements,
        notes,
    })
}

/// Drops records whose [`CaseRecord::key`] was seen before (keeping the first, in file order)
/// and sorts the rest by study, variant, sample, model and pass. Returns them with the number
/// dropped. `records.csv` and the analysis both go through here, so they list the same rows.
pub fn dedupe_and_sort(records: &[CaseRecord]) -> (Vec<CaseRecord>, usize) {
    let mut seen = BTreeSet::new();
    let mut kept: Vec<CaseRecord> = records.iter().filter(|r| seen.insert(r.key())).cloned().collect();
    let duplicates = records.len() - kept.len();
    kept.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    (kept, duplicates)
}

fn sort_key(r: &CaseRecord) -> (&str, u32, &str, &str, Pass) {
    (&r.study_id, r.variant_index, &r.sample_id, &r.model, r.pass)
}

/// The manifest's models in its order, then any model found only in the records (sorted).
fn model_order(manifest: &RunManifest, records: &[CaseRecord], notes: &mut Vec<String>) -> Vec<String> {
    let mut names: Vec<String> = manifest.models.iter().map(|m| m.name.clone()).collect();
    let extra: BTreeSet<&str> =
        records.iter().map(|r| r.model.as_str()).filter(|m| !manifest.models.iter().any(|x| x.name == *m)).collect();
    if !extra.is_empty() {
        notes.push(format!(
            "records name models the manifest does not list: {}; they are analysed too.",
            extra.iter().copied().collect::<Vec<_>>().join(", ")
        ));
    }
    names.extend(extra.into_iter().map(str::to_owned));
    names
}

fn record_counts(read: usize, duplicates: usize, records: &[CaseRecord]) -> RecordCounts {
    let image = records.iter().filter(|r| r.pass == Pass::Image);
    RecordCounts {
        read,
        duplicates,
        image_pass: image.clone().count(),
        blank_image_pass: records.iter().filter(|r| r.pass == Pass::BlankImage).count(),
        errors: records.iter().filter(|r| r.error.is_some()).count(),
        unscorable: image.filter(|r| r.error.is_none() && scorable(r).is_none()).count(),
    }
}

/// The parsed answer, parsing the text when only the text was stored.
fn answer_of(r: &CaseRecord) -> Option<Answer> {
    r.parsed_answer.or_else(|| r.answer_text.as_deref().map(parse_answer))
}

/// `(answer, truth)` of a record the answer statistics can use: no error, an answer, and a
/// yes/no ground truth (unknown truth cannot be scored).
fn scorable(r: &CaseRecord) -> Option<(Answer, Answer)> {
    if r.error.is_some() {
        return None;
    }
    let truth = r.ground_truth.filter(|t| *t != Answer::Unknown)?;
    Some((answer_of(r)?, truth))
}

// ---------------------------------------------------------------------------------------------
// Bootstrap

/// The manifest's bootstrap settings and each study's cluster label.
struct Boot {
    config: BootstrapConfig,
    /// Study id -> the cluster it is resampled with (itself, or its subject).
    cluster: BTreeMap<String, String>,
}

impl Boot {
    fn new(manifest: &RunManifest, records: &[CaseRecord], notes: &mut Vec<String>) -> Result<Self> {
        let b = &manifest.bootstrap;
        let config = BootstrapConfig { resamples: b.resamples, seed: b.seed, level: DEFAULT_LEVEL, unit: b.unit.clone() };
        // Fail on bad settings once, here, naming the manifest, not deep in some statistic.
        cluster_bootstrap(&[ClusterRatio::new("probe", 1.0, 1.0)], &config)
            .map_err(|e| AnalysisError::manifest(format!("bootstrap settings: {e}")))?;
        let mut cluster = BTreeMap::new();
        let by_subject = b.unit == UNIT_SUBJECT;
        let mut missing = BTreeSet::new();
        for r in records {
            let label = match (&r.subject_id, by_subject) {
                (Some(s), true) => format!("subject:{s}"),
                (None, true) => {
                    missing.insert(r.study_id.clone());
                    format!("study:{}", r.study_id)
                }
                _ => r.study_id.clone(),
            };
            // A study's first record (in sorted order) decides; a study names one subject.
            cluster.entry(r.study_id.clone()).or_insert(label);
        }
        if !missing.is_empty() {
            notes
                .push(format!("the bootstrap unit is subject, but {} studies have no subject id; each is its own cluster.", missing.len()));
        }
        Ok(Self { config, cluster })
    }

    /// The interval of `sum num / sum den` over the parts (one per study, labelled by study).
    /// `None` when the statistic has no value, or (rarely, with very few covered studies and
    /// few resamples) when no resample covers any.
    fn interval(&self, parts: Vec<ClusterRatio>) -> Result<Option<Interval>> {
        let parts: Vec<ClusterRatio> = parts
            .into_iter()
            .map(|p| {
                let cluster = self.cluster.get(&p.cluster).cloned().unwrap_or(p.cluster);
                ClusterRatio { cluster, ..p }
            })
            .collect();
        match cluster_bootstrap(&parts, &self.config) {
            Ok(i) => Ok(i),
            Err(MetricError::TooFew { .. }) => Ok(None),
            Err(e) => Err(AnalysisError::records(format!("bootstrap: {e}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Maps

/// The valid maps of the image-pass records without an error, by (model, sample id).
struct Maps {
    maps: BTreeMap<(String, String), LoadedMap>,
}

struct LoadedMap {
    map: AttentionMap,
    /// Not a uniform fallback: a map that says where the model looked.
    attention: bool,
}

impl Maps {
    /// A real attention map of this row, if there is one.
    fn attention(&self, model: &str, sample: &str) -> Option<&AttentionMap> {
        self.maps.get(&(model.to_owned(), sample.to_owned())).filter(|m| m.attention).map(|m| &m.map)
    }
}

fn load_maps<E, F>(records: &[CaseRecord], load: &mut F, notes: &mut Vec<String>) -> Maps
where
    E: std::error::Error,
    F: FnMut(&TensorRef) -> std::result::Result<Vec<f32>, E>,
{
    let mut maps = BTreeMap::new();
    let mut failures: BTreeMap<&str, (usize, String)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.pass == Pass::Image && r.error.is_none()) {
        let Some(m) = &r.map else { continue };
        let g = &m.provenance.geometry;
        let loaded = load(&m.values).map_err(|e| error_chain(&e)).and_then(|values| {
            if m.values.shape != [g.h, g.w] {
                return Err(format!("stored shape {:?} is not the map's grid [{}, {}]", m.values.shape, g.h, g.w));
            }
            AttentionMap::new(g.h, g.w, values.into_iter().map(f64::from).collect()).map_err(|e| e.to_string())
        });
        match loaded {
            Ok(map) => {
                let attention = m.provenance.method != MapMethod::UniformFallback;
                maps.insert((r.model.clone(), r.sample_id.clone()), LoadedMap { map, attention });
            }
            Err(e) => {
                let f = failures.entry(r.model.as_str()).or_insert((0, String::new()));
                if f.0 == 0 {
                    f.1 = format!("{} ({}): {e}", r.sample_id, m.values.file);
                }
                f.0 += 1;
            }
        }
    }
    for (model, (n, first)) in failures {
        notes.push(format!("model {model}: {n} maps could not be read and are left out of the map statistics; first: {first}"));
    }
    Maps { maps }
}

/// An error with its sources, `a: b: c`: I/O errors keep the path in one layer and the cause
/// in the next.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// A map resampled by area onto the common `g x g` grid over its whole original image.
fn on_common_grid(r: &CaseRecord, map: &AttentionMap, g: usize) -> std::result::Result<Vec<f64>, MetricError> {
    let Some(m) = &r.map else {
        return Err(MetricError::Invalid("record has no map".to_owned()));
    };
    let geo = &m.provenance.geometry;
    resample(&map.normalized()?, map.h, map.w, &geo.crop, geo.image_w, geo.image_h, g)
}

// ---------------------------------------------------------------------------------------------
// One model

/// One model's records, split by pass, and its scorable image-pass rows grouped by study.
struct ModelData<'a> {
    name: String,
    image: Vec<&'a CaseRecord>,
    blank: Vec<&'a CaseRecord>,
    /// Scorable image-pass rows (with their text-only answers).
    rows: Vec<VariantRow>,
    studies: Vec<StudyRows<'a>>,
}

/// One study's scorable rows for one model.
struct StudyRows<'a> {
    id: String,
    /// Sorted by variant index.
    rows: Vec<VariantRow>,
    records: Vec<&'a CaseRecord>,
    /// The validated study, when its base question was answered.
    study: Option<Study>,
    finding: Option<String>,
}

impl StudyRows<'_> {
    fn correct(&self) -> usize {
        self.rows.iter().filter(|r| r.is_correct()).count()
    }
}

impl<'a> ModelData<'a> {
    fn new(name: &str, records: &'a [CaseRecord], notes: &mut Vec<String>) -> Result<Self> {
        let mine = records.iter().filter(|r| r.model == name);
        let image: Vec<&CaseRecord> = mine.clone().filter(|r| r.pass == Pass::Image).collect();
        let blank: Vec<&CaseRecord> = mine.filter(|r| r.pass == Pass::BlankImage).collect();
        let blank_answers: BTreeMap<&str, Answer> =
            blank.iter().filter(|r| r.error.is_none()).filter_map(|r| Some((r.sample_id.as_str(), answer_of(r)?))).collect();

        let mut by_study: BTreeMap<&str, Vec<(VariantRow, &CaseRecord)>> = BTreeMap::new();
        for r in &image {
            let Some((answer, truth)) = scorable(r) else {
                continue;
            };
            let row = VariantRow {
                study_id: r.study_id.clone(),
                variant_index: r.variant_index,
                strategy: r.strategy.clone(),
                polarity: r.polarity,
                answer,
                truth,
                blank_image_answer: blank_answers.get(r.sample_id.as_str()).copied(),
            };
            by_study.entry(&r.study_id).or_default().push((row, r));
        }

        let mut studies = Vec::with_capacity(by_study.len());
        let mut rows = Vec::new();
        for (id, mut list) in by_study {
            list.sort_by_key(|(row, _)| row.variant_index);
            let (study_rows, recs): (Vec<VariantRow>, Vec<&CaseRecord>) = list.into_iter().unzip();
            let has_base = study_rows.first().is_some_and(|r| r.variant_index == 0);
            let study = if has_base {
                let mut grouped = group_studies(&study_rows).map_err(|e| AnalysisError::records(format!("model {name}: {e}")))?;
                grouped.pop()
            } else {
                notes.push(format!(
                    "model {name}, study {id}: the base question has no usable answer; its rephrasings count for accuracy and cs_k but not for flip rate or consistency."
                ));
                None
            };
            let finding = recs.first().and_then(|r| r.finding.clone());
            rows.extend(study_rows.iter().cloned());
            studies.push(StudyRows { id: id.to_owned(), rows: study_rows, records: recs, study, finding });
        }
        Ok(Self { name: name.to_owned(), image, blank, rows, studies })
    }

    /// One part per study from `f`, labelled with the study id.
    fn parts(&self, f: impl Fn(&StudyRows) -> (f64, f64)) -> Vec<ClusterRatio> {
        self.studies
            .iter()
            .map(|s| {
                let (num, den) = f(s);
                ClusterRatio::new(&s.id, num, den)
            })
            .collect()
    }
}

/// The shared crate's per-study part of a statistic of a validated study; `(0, 0)` for a study
/// without a base, which that statistic does not cover.
fn study_part(s: &StudyRows, f: impl Fn(&[Study]) -> Vec<ClusterRatio>) -> (f64, f64) {
    match &s.study {
        Some(study) => f(std::slice::from_ref(study)).first().map_or((0.0, 0.0), |p| (p.num, p.den)),
        None => (0.0, 0.0),
    }
}

fn accuracy_part(s: &StudyRows) -> (f64, f64) {
    (s.correct() as f64, s.rows.len() as f64)
}

fn flip_part(s: &StudyRows) -> (f64, f64) {
    study_part(s, flip_parts)
}

fn consistency_part(s: &StudyRows) -> (f64, f64) {
    study_part(s, full_consistency_parts)
}

/// Whether the study is fully consistent (`None` when not covered: no base or < 2 variants).
fn fully_consistent(s: &StudyRows) -> Option<bool> {
    let (num, den) = consistency_part(s);
    (den > 0.0).then_some(num > 0.0)
}

/// At least one row changed its answer without the image (`None` without text-only answers).
fn image_reliant(s: &StudyRows) -> Option<bool> {
    let with_blank: Vec<&VariantRow> = s.rows.iter().filter(|r| r.blank_image_answer.is_some()).collect();
    (!with_blank.is_empty()).then(|| with_blank.iter().any(|r| Some(r.answer) != r.blank_image_answer))
}

fn analyze_model(data: &ModelData, random_weights: bool, boot: &Boot, maps: &Maps, summaries: &[StudySummary]) -> Result<ModelAnalysis> {
    let errors = data.image.iter().filter(|r| r.error.is_some()).count();
    let max_variants = data.studies.iter().map(|s| s.rows.len()).max().unwrap_or(0);
    let mut cs_k = BTreeMap::new();
    for k in 1..=max_variants {
        let parts = data.parts(|s| match consensus_score(s.rows.len(), s.correct(), k) {
            Some(score) => (score, 1.0),
            None => (0.0, 0.0),
        });
        if let Some(i) = boot.interval(parts)? {
            cs_k.insert(k as u32, i);
        }
    }

    Ok(ModelAnalysis {
        model: data.name.clone(),
        random_weights,
        rows: data.image.len(),
        answered: data.rows.len(),
        errors,
        blank_image_rows: data.blank.len(),
        blank_image_errors: data.blank.iter().filter(|r| r.error.is_some()).count(),
        studies: data.studies.len(),
        accuracy: boot.interval(data.parts(accuracy_part))?,
        flip_rate: boot.interval(data.parts(flip_part))?,
        full_consistency: boot.interval(data.parts(consistency_part))?,
        cs_k,
        by_strategy: by_strategy(data, boot)?,
        by_finding: by_finding(data, boot)?,
        blank_image_accuracy: blank_image_accuracy(data, boot)?,
        image_reliance: image_reliance(data, boot)?,
        yes_no_margin: margins(data),
        latency: latency(&data.image),
        maps: map_summary(data, maps, boot)?,
        map_consistency: summarize(&summaries.iter().filter_map(|s| s.map_consistency).collect::<Vec<_>>()),
        flipped_vs_stable: flipped_vs_stable(data, maps),
        trust: trust_summary(data, boot)?,
    })
}

/// The trust checks' summary rows: method agreement, faithfulness flag rates per method and
/// size, sink counts. Rates and mean distances get study-clustered intervals like every rate.
fn trust_summary(data: &ModelData, boot: &Boot) -> Result<Option<TrustSummary>> {
    let checked: Vec<(&CaseRecord, &TrustRecord)> =
        data.image.iter().filter(|r| r.error.is_none()).filter_map(|r| Some((*r, r.trust.as_ref()?))).collect();
    if checked.is_empty() {
        return Ok(None);
    }
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    let mut fallbacks = 0;
    for (r, t) in &checked {
        if let Some(m) = &r.map {
            *methods.entry(m.provenance.method.to_string()).or_default() += 1;
            fallbacks += usize::from(m.provenance.fallback_reason.is_some());
        }
        for m in &t.maps {
            *methods.entry(m.provenance.method.to_string()).or_default() += 1;
        }
    }
    // Per-study (num, den) parts of a per-record quantity, for the bootstrap.
    let parts = |f: &dyn Fn(&TrustRecord) -> Option<f64>| -> Vec<ClusterRatio> {
        let mut by_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for (r, t) in &checked {
            let e = by_study.entry(r.study_id.as_str()).or_default();
            if let Some(v) = f(t) {
                e.0 += v;
                e.1 += 1.0;
            }
        }
        by_study.into_iter().map(|(id, (num, den))| ClusterRatio::new(id, num, den)).collect()
    };

    let mut pairs: Vec<(MapMethod, MapMethod)> = Vec::new();
    for (_, t) in &checked {
        for p in &t.agreement {
            if !pairs.contains(&(p.a, p.b)) {
                pairs.push((p.a, p.b));
            }
        }
    }
    let mut agreement = Vec::new();
    for (a, b) in pairs {
        let of = |t: &TrustRecord| t.agreement.iter().find(|p| p.a == a && p.b == b).map(|p| p.js_distance);
        let values: Vec<f64> = checked.iter().filter_map(|(_, t)| of(t)).collect();
        let Some(js_distance) = summarize(&values) else { continue };
        agreement.push(AgreementSummary { a, b, rows: values.len(), js_distance, mean_js_distance: boot.interval(parts(&of))? });
    }

    let mut keys: Vec<(MapMethod, u32)> = Vec::new();
    for (_, t) in &checked {
        for f in &t.faithfulness {
            if !keys.contains(&(f.method, f.k_percent)) {
                keys.push((f.method, f.k_percent));
            }
        }
    }
    let mut faithfulness = Vec::new();
    for (method, k) in keys {
        let of = |t: &TrustRecord| t.faithfulness.iter().find(|f| f.method == method && f.k_percent == k).cloned();
        let rows: Vec<Faithfulness> = checked.iter().filter_map(|(_, t)| of(t)).collect();
        let top: Vec<f64> = rows.iter().map(|f| f.delta_top).collect();
        let random: Vec<f64> = rows.iter().map(|f| f.delta_random).collect();
        let (Some(delta_top), Some(delta_random)) = (summarize(&top), summarize(&random)) else { continue };
        faithfulness.push(FaithfulnessSummary {
            method,
            k_percent: k,
            rows: rows.len(),
            flagged: rows.iter().filter(|f| f.flagged).count(),
            flag_rate: boot.interval(parts(&|t| of(t).map(|f| f64::from(u8::from(f.flagged)))))?,
            delta_top,
            delta_random,
        });
    }

    let with_sinks: Vec<(&CaseRecord, &SinkCheck)> = checked.iter().filter_map(|(r, t)| Some((*r, t.sinks.as_ref()?))).collect();
    let sinks = if with_sinks.is_empty() {
        None
    } else {
        let mut per_study: BTreeMap<&str, usize> = BTreeMap::new();
        for (r, s) in &with_sinks {
            per_study.insert(r.study_id.as_str(), s.cells.len());
        }
        let cells: Vec<f64> = per_study.values().map(|&c| c as f64).collect();
        let mass: Vec<f64> = with_sinks.iter().map(|(_, s)| s.mass).collect();
        let focus: Vec<f64> = with_sinks.iter().filter_map(|(r, _)| r.map.as_ref().map(|m| m.metrics.focus)).collect();
        let focus_without: Vec<f64> = with_sinks.iter().filter_map(|(_, s)| s.metrics_without.map(|m| m.focus)).collect();
        match (summarize(&cells), summarize(&mass)) {
            (Some(cells), Some(mass)) => Some(SinkSummary {
                studies: per_study.len(),
                studies_with_sinks: per_study.values().filter(|&&c| c > 0).count(),
                cells,
                mass,
                focus: summarize(&focus),
                focus_without: summarize(&focus_without),
            }),
            _ => None,
        }
    };
    Ok(Some(TrustSummary {
        records: checked.len(),
        methods,
        fallbacks,
        records_with_notes: checked.iter().filter(|(_, t)| !t.notes.is_empty()).count(),
        agreement,
        faithfulness,
        sinks,
    }))
}

/// Accuracy of each strategy's rows (the base's strategy included) and the flip rate of the
/// pairs whose variant used it. Every study is a cluster (a study without that strategy has a
/// 0/0 part), as the shared statistics do, so the strategies' intervals resample the same
/// studies.
fn by_strategy(data: &ModelData, boot: &Boot) -> Result<BTreeMap<String, GroupStats>> {
    let strategies: BTreeSet<&str> = data.rows.iter().map(|r| r.strategy.as_str()).collect();
    let mut out = BTreeMap::new();
    for st in strategies {
        let of = |s: &StudyRows| s.rows.iter().filter(|r| r.strategy == st).count();
        let accuracy = boot.interval(data.parts(|s| {
            let rows: Vec<&VariantRow> = s.rows.iter().filter(|r| r.strategy == st).collect();
            (rows.iter().filter(|r| r.is_correct()).count() as f64, rows.len() as f64)
        }))?;
        let flip_rate = boot.interval(data.parts(|s| study_part(s, |x| flip_parts_for_strategy(x, st))))?;
        out.insert(
            st.to_owned(),
            GroupStats {
                rows: data.studies.iter().map(of).sum(),
                studies: data.studies.iter().filter(|s| of(s) > 0).count(),
                accuracy,
                flip_rate,
                full_consistency: None,
            },
        );
    }
    Ok(out)
}

/// Rates of the studies of each finding (the base row's finding). Only that finding's studies
/// are resampled: the interval is conditional on the finding.
fn by_finding(data: &ModelData, boot: &Boot) -> Result<BTreeMap<String, GroupStats>> {
    let mut groups: BTreeMap<String, Vec<&StudyRows>> = BTreeMap::new();
    for s in &data.studies {
        groups.entry(s.finding.clone().unwrap_or_else(|| NO_FINDING.to_owned())).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for (finding, studies) in groups {
        let parts = |f: fn(&StudyRows) -> (f64, f64)| -> Vec<ClusterRatio> {
            studies
                .iter()
                .map(|s| {
                    let (n, d) = f(s);
                    ClusterRatio::new(&s.id, n, d)
                })
                .collect()
        };
        out.insert(
            finding,
            GroupStats {
                rows: studies.iter().map(|s| s.rows.len()).sum(),
                studies: studies.len(),
                accuracy: boot.interval(parts(accuracy_part))?,
                flip_rate: boot.interval(parts(flip_part))?,
                full_consistency: boot.interval(parts(consistency_part))?,
            },
        );
    }
    Ok(out)
}

fn blank_image_accuracy(data: &ModelData, boot: &Boot) -> Result<Option<Interval>> {
    let mut per_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in &data.blank {
        if let Some((answer, truth)) = scorable(r) {
            let e = per_study.entry(&r.study_id).or_default();
            e.0 += f64::from(u8::from(answer == truth));
            e.1 += 1.0;
        }
    }
    boot.interval(per_study.into_iter().map(|(id, (n, d))| ClusterRatio::new(id, n, d)).collect())
}

/// See [`ImageReliance`] for the definitions. `None` when the model has no text-only records.
fn image_reliance(data: &ModelData, boot: &Boot) -> Result<Option<ImageReliance>> {
    if data.blank.is_empty() {
        return Ok(None);
    }
    let rate = boot.interval(data.parts(|s| {
        let with_blank: Vec<&VariantRow> = s.rows.iter().filter(|r| r.blank_image_answer.is_some()).collect();
        let changed = with_blank.iter().filter(|r| Some(r.answer) != r.blank_image_answer).count();
        (changed as f64, with_blank.len() as f64)
    }))?;
    let quadrant = |s: &StudyRows| -> Option<(bool, bool)> { Some((fully_consistent(s)?, image_reliant(s)?)) };
    let share = |want: (bool, bool)| -> Result<QuadrantShare> {
        let parts = data.parts(|s| match quadrant(s) {
            Some(q) => (f64::from(u8::from(q == want)), 1.0),
            None => (0.0, 0.0),
        });
        Ok(QuadrantShare { studies: data.studies.iter().filter(|s| quadrant(s) == Some(want)).count(), share: boot.interval(parts)? })
    };
    Ok(Some(ImageReliance {
        rows: data.rows.iter().filter(|r| r.blank_image_answer.is_some()).count(),
        rate,
        studies: data.studies.iter().filter(|s| quadrant(s).is_some()).count(),
        consistent_reliant: share((true, true))?,
        consistent_not_reliant: share((true, false))?,
        inconsistent_reliant: share((false, true))?,
        inconsistent_not_reliant: share((false, false))?,
    }))
}

fn margins(data: &ModelData) -> Option<MarginSummary> {
    let mut all = Vec::new();
    let (mut correct, mut wrong) = (Vec::new(), Vec::new());
    for s in &data.studies {
        for (row, r) in s.rows.iter().zip(&s.records) {
            let Some(m) = r.yes_no_margin.filter(|m| m.is_finite()) else {
                continue;
            };
            all.push(m);
            if row.is_correct() { correct.push(m) } else { wrong.push(m) }
        }
    }
    Some(MarginSummary { all: summarize(&all)?, correct: summarize(&correct), wrong: summarize(&wrong) })
}

fn latency(image: &[&CaseRecord]) -> LatencySummary {
    let ok: Vec<_> = image.iter().filter(|r| r.error.is_none()).map(|r| r.latency).collect();
    let of = |f: fn(&radlens_shared::record::Latency) -> f64| summarize(&ok.iter().map(f).collect::<Vec<_>>());
    LatencySummary {
        preprocess_ms: of(|l| l.preprocess_ms),
        image_encode_ms: of(|l| l.image_encode_ms),
        prefill_ms: of(|l| l.prefill_ms),
        decode_ms: of(|l| l.decode_ms),
        capture_ms: of(|l| l.capture_ms),
        total_ms: of(|l| l.total_ms),
    }
}

/// Stored single-map metrics of the model's valid attention maps (errors excluded); ROI means
/// with intervals over the rows that have a box.
fn map_summary(data: &ModelData, maps: &Maps, boot: &Boot) -> Result<Option<MapSummary>> {
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    let mut used = Vec::new();
    for r in data.image.iter().filter(|r| r.error.is_none()) {
        let Some(m) = &r.map else { continue };
        let method = serde_json::to_value(m.provenance.method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", m.provenance.method));
        *methods.entry(method).or_default() += 1;
        if maps.attention(&r.model, &r.sample_id).is_some() {
            used.push(*r);
        }
    }
    let metric = |f: fn(&CaseRecord) -> Option<f64>| summarize(&used.iter().filter_map(|r| f(r)).collect::<Vec<_>>());
    let (Some(focus), Some(gini), Some(top10_mass), Some(entropy_nats), Some(image_share)) = (
        metric(|r| r.map.as_ref().map(|m| m.metrics.focus)),
        metric(|r| r.map.as_ref().map(|m| m.metrics.gini)),
        metric(|r| r.map.as_ref().map(|m| m.metrics.top10_mass)),
        metric(|r| r.map.as_ref().map(|m| m.metrics.entropy_nats)),
        metric(|r| r.map.as_ref().map(|m| m.image_share)),
    ) else {
        return Ok(None);
    };

    let roi_rows: Vec<(&str, radlens_shared::roi::RoiMetrics)> =
        used.iter().filter_map(|r| Some((r.study_id.as_str(), r.map.as_ref()?.roi?))).collect();
    let roi = if roi_rows.is_empty() {
        None
    } else {
        let mean = |f: fn(&radlens_shared::roi::RoiMetrics) -> f64| {
            let mut per_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for (study, m) in &roi_rows {
                let e = per_study.entry(study).or_default();
                e.0 += f(m);
                e.1 += 1.0;
            }
            boot.interval(per_study.into_iter().map(|(s, (n, d))| ClusterRatio::new(s, n, d)).collect())
        };
        Some(RoiSummary {
            rows: roi_rows.len(),
            relevance_mass: mean(|m| m.relevance_mass)?,
            rank_accuracy: mean(|m| m.rank_accuracy)?,
            pointing_game: mean(|m| m.pointing_game)?,
        })
    };
    Ok(Some(MapSummary { maps: used.len(), methods, focus, gini, top10_mass, entropy_nats, image_share, roi }))
}

/// Attention consistency of one study's variants (all image-pass maps without an error, the
/// answer does not matter): mean pairwise `1 - js_distance`. Variants of one study share a
/// grid; should they not, they are compared on the common grid instead of failing.
fn study_map_consistency<'a>(
    model: &str,
    records: impl Iterator<Item = &'a CaseRecord>,
    maps: &Maps,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let with_maps: Vec<(&CaseRecord, &AttentionMap)> = records.filter_map(|r| Some((r, maps.attention(model, &r.sample_id)?))).collect();
    if with_maps.len() < 2 {
        return None;
    }
    let list: Vec<AttentionMap> = with_maps.iter().map(|(_, m)| (*m).clone()).collect();
    match consistency(&list) {
        Ok(c) => Some(c),
        Err(MetricError::GridsDiffer { .. }) => {
            const G: usize = radlens_shared::geometry::DEFAULT_COMMON_GRID;
            let resampled: std::result::Result<Vec<AttentionMap>, MetricError> =
                with_maps.iter().map(|(r, m)| on_common_grid(r, m, G).and_then(|v| AttentionMap::new(G, G, v))).collect();
            match resampled.and_then(|l| consistency(&l)) {
                Ok(c) => Some(c),
                Err(e) => {
                    notes.push(format!("model {model}, study {}: map consistency: {e}", with_maps[0].0.study_id));
                    None
                }
            }
        }
        Err(e) => {
            notes.push(format!("model {model}, study {}: map consistency: {e}", with_maps[0].0.study_id));
            None
        }
    }
}

/// All of a model's image-pass records of one study, for [`StudySummary`] and consistency.
fn study_records<'a>(data: &'a ModelData, id: &'a str) -> impl Iterator<Item = &'a CaseRecord> + 'a {
    data.image.iter().copied().filter(move |r| r.study_id == id && r.error.is_none())
}

fn flipped_vs_stable(data: &ModelData, maps: &Maps) -> Option<FlipMaps> {
    let (mut flipped, mut stable) = (Vec::new(), Vec::new());
    for s in &data.studies {
        let Some(study) = &s.study else { continue };
        let base = study.base().adjusted_answer();
        for (row, r) in s.rows.iter().zip(&s.records).filter(|(row, _)| row.variant_index > 0) {
            if maps.attention(&data.name, &r.sample_id).is_none() {
                continue;
            }
            let Some(m) = r.map.as_ref().map(|m| m.metrics) else {
                continue;
            };
            if row.adjusted_answer() != base { flipped.push(m) } else { stable.push(m) }
        }
    }
    if flipped.is_empty() && stable.is_empty() {
        return None;
    }
    let group = |ms: &[radlens_shared::metrics::MapMetrics]| MapGroup {
        rows: ms.len(),
        focus: summarize(&ms.iter().map(|m| m.focus).collect::<Vec<_>>()),
        gini: summarize(&ms.iter().map(|m| m.gini).collect::<Vec<_>>()),
        top10_mass: summarize(&ms.iter().map(|m| m.top10_mass).collect::<Vec<_>>()),
    };
    Some(FlipMaps { flipped: group(&flipped), stable: group(&stable) })
}

fn study_summaries(data: &ModelData, maps: &Maps, notes: &mut Vec<String>) -> Vec<StudySummary> {
    let mut ids: BTreeMap<&str, Vec<&CaseRecord>> = BTreeMap::new();
    for r in &data.image {
        ids.entry(&r.study_id).or_default().push(r);
    }
    ids.into_iter()
        .map(|(id, recs)| {
            let scored = data.studies.iter().find(|s| s.id == id);
            let base = recs.iter().find(|r| r.variant_index == 0).unwrap_or(&recs[0]);
            let flips = scored.map_or(0, |s| {
                let (num, _) = flip_part(s);
                num as usize
            });
            StudySummary {
                study_id: id.to_owned(),
                model: data.name.clone(),
                finding: base.finding.clone(),
                image: base.image.clone(),
                variants: recs.len(),
                answered: scored.map_or(0, |s| s.rows.len()),
                correct: scored.map_or(0, StudyRows::correct),
                errors: recs.iter().filter(|r| r.error.is_some()).count(),
                fully_consistent: scored.and_then(fully_consistent),
                flips,
                image_reliant: scored.and_then(image_reliant),
                map_consistency: study_map_consistency(&data.name, study_records(data, id), maps, notes),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Two models

/// Clustered and exact McNemar on the rows (study, variant) that both models answered, and the
/// accuracy difference with its interval.
fn compare_models(a: &str, b: &str, rows_a: &[VariantRow], rows_b: &[VariantRow], boot: &Boot) -> Result<ModelComparison> {
    let key = |r: &VariantRow| (r.study_id.clone(), r.variant_index);
    let keys_a: BTreeSet<_> = rows_a.iter().map(key).collect();
    let keys_b: BTreeSet<_> = rows_b.iter().map(key).collect();
    let both: BTreeSet<_> = keys_a.intersection(&keys_b).collect();
    let pa: Vec<VariantRow> = rows_a.iter().filter(|r| both.contains(&key(r))).cloned().collect();
    let pb: Vec<VariantRow> = rows_b.iter().filter(|r| both.contains(&key(r))).cloned().collect();
    let paired = pair_rows(&pa, &pb).map_err(|e| AnalysisError::records(format!("models {a} and {b}: {e}")))?;
    let test = mcnemar(&paired).map_err(|e| AnalysisError::records(format!("models {a} and {b}: {e}")))?;
    let mut per_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for p in &paired {
        let e = per_study.entry(&p.study_id).or_default();
        e.0 += f64::from(u8::from(p.a_correct)) - f64::from(u8::from(p.b_correct));
        e.1 += 1.0;
    }
    let n = paired.len() as f64;
    let share = |f: fn(&radlens_shared::stats::PairedRow) -> bool| (n > 0.0).then(|| paired.iter().filter(|p| f(p)).count() as f64 / n);
    Ok(ModelComparison {
        model_a: a.to_owned(),
        model_b: b.to_owned(),
        rows: paired.len(),
        studies: per_study.len(),
        accuracy_a: share(|p| p.a_correct),
        accuracy_b: share(|p| p.b_correct),
        accuracy_difference: boot.interval(per_study.into_iter().map(|(s, (n, d))| ClusterRatio::new(s, n, d)).collect())?,
        mcnemar: test,
    })
}

/// JS divergence (bits) and distance of the two models' maps of every sample both mapped, on
/// the common grid over the whole image (the models' grids and crops differ).
fn cross_model_maps(a: &str, b: &str, grid: usize, records: &[CaseRecord], maps: &Maps, notes: &mut Vec<String>) -> CrossModelMaps {
    let image: BTreeMap<(&str, &str), &CaseRecord> = records
        .iter()
        .filter(|r| r.pass == Pass::Image && r.error.is_none())
        .map(|r| ((r.model.as_str(), r.sample_id.as_str()), r))
        .collect();
    let mut per_row = Vec::new();
    let mut failed: Option<(usize, String)> = None;
    for ((model, sample), ra) in image.range((a, "")..) {
        if *model != a {
            break;
        }
        let (Some(ma), Some(rb)) = (maps.attention(a, sample), image.get(&(b, *sample))) else {
            continue;
        };
        let Some(mb) = maps.attention(b, sample) else {
            continue;
        };
        let js = on_common_grid(ra, ma, grid).and_then(|p| Ok((p, on_common_grid(rb, mb, grid)?))).and_then(|(p, q)| js_divergence(&p, &q));
        match js {
            Ok(d) => per_row.push(CrossModelRow {
                sample_id: (*sample).to_owned(),
                study_id: ra.study_id.clone(),
                js_divergence: d,
                js_distance: d.sqrt(),
            }),
            Err(e) => {
                let f = failed.get_or_insert((0, format!("{sample}: {e}")));
                f.0 += 1;
            }
        }
    }
    if let Some((n, first)) = failed {
        notes.push(format!("models {a} and {b}: {n} rows could not be compared on the common grid; first: {first}"));
    }
    CrossModelMaps {
        model_a: a.to_owned(),
        model_b: b.to_owned(),
        grid,
        rows: per_row.len(),
        js_divergence: summarize(&per_row.iter().map(|r| r.js_divergence).collect::<Vec<_>>()),
        js_distance: summarize(&per_row.iter().map(|r| r.js_distance).collect::<Vec<_>>()),
        per_row,
    }
}

fn disagreements(
    records: &[CaseRecord],
    studies: &[StudySummary],
    rows: &BTreeMap<String, Vec<VariantRow>>,
    cross: &[CrossModelMaps],
) -> Vec<StudyDisagreement> {
    let mut info: BTreeMap<&str, (Option<String>, String)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.pass == Pass::Image) {
        let e = info.entry(&r.study_id).or_insert_with(|| (r.finding.clone(), r.image.clone()));
        if r.variant_index == 0 {
            *e = (r.finding.clone(), r.image.clone());
        }
    }
    let mut answers: BTreeMap<(&str, u32), BTreeSet<Answer>> = BTreeMap::new();
    for r in rows.values().flatten() {
        answers.entry((&r.study_id, r.variant_index)).or_default().insert(r.answer);
    }
    let mut js: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for row in cross.iter().flat_map(|c| &c.per_row) {
        js.entry(&row.study_id).or_default().push(row.js_distance);
    }
    let mut out: Vec<StudyDisagreement> = info
        .into_iter()
        .map(|(id, (finding, image))| StudyDisagreement {
            study_id: id.to_owned(),
            finding,
            image,
            flips: studies.iter().filter(|s| s.study_id == id).map(|s| s.flips).sum(),
            answer_disagreements: answers.range((id, 0)..=(id, u32::MAX)).filter(|(_, set)| set.len() > 1).count(),
            mean_js_distance: js.get(id).map(|v| v.iter().sum::<f64>() / v.len() as f64),
        })
        .collect();
    out.sort_by(|a, b| {
        (b.flips + b.answer_disagreements)
            .cmp(&(a.flips + a.answer_disagreements))
            .then(b.mean_js_distance.unwrap_or(-1.0).total_cmp(&a.mean_js_distance.unwrap_or(-1.0)))
            .then(a.study_id.cmp(&b.study_id))
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// Mean, median, 95th percentile, min and max of the finite values; `None` when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Summary {
        n: v.len(),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        median: percentile_linear(&v, 0.5)?,
        p95: percentile_linear(&v, 0.95)?,
        min: v[0],
        max: v[v.len() - 1],
    })
}

/// A synthetic run directory, by hand: 2 models x 3 studies x 3 variants (original, synonym,
/// negated), text-only records for model A, one error record (model B), one duplicate record,
/// small attention maps and 64x64 images. The expected numbers in the tests are worked out by
/// hand in the comments of [`fixture::answers`].
#[cfg(test)]
pub(crate) mod fixture {
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
                trust: None,
            },
            bootstrap: BootstrapSettings { resamples: 300, seed, unit: "study".to_owned() },
            shard: None,
            n_studies: None,
            fingerprint: "fixture".to_owned(),
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
            question: format!("Question {variant} about {id}?"),
            ground_truth: Some(truth),
            roi: roi(study),
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
            metadata: Default::default(),
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
}

#[cfg(test)]
mod tests {
    use super::fixture::{self, A, B};
    use super::*;

    fn model<'a>(a: &'a Analysis, name: &str) -> &'a ModelAnalysis {
        a.models.iter().find(|m| m.model == name).unwrap()
    }

    fn est(i: &Option<Interval>) -> f64 {
        i.as_ref().expect("a value").estimate
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// Trust rows: per method and size the flag rate, per pair of methods the JS distance, per
    /// study its sinks; records without checks are left out.
    #[test]
    fn trust_checks_are_summarised() {
        use radlens_shared::record::{Faithfulness, SinkCheck, TrustRecord};
        use radlens_shared::trust::MethodPair;
        let mut records = Vec::new();
        for s in 0..3 {
            for v in 0..3 {
                let mut r = fixture::record(s, v, fixture::A, Pass::Image, Some(Answer::Yes), None);
                if s < 2 {
                    let row = |method, flagged| Faithfulness {
                        method,
                        k_percent: 10,
                        cells: 1,
                        margin: 1.0,
                        delta_top: if flagged { -0.1 } else { -0.5 },
                        delta_random: -0.2,
                        random_draws: 3,
                        flagged,
                    };
                    r.trust = Some(TrustRecord {
                        // Grad-CAM flagged on s1's three rows only; attention never.
                        faithfulness: vec![row(MapMethod::QueryToVisual, false), row(MapMethod::Gradcam, s == 0)],
                        agreement: vec![MethodPair {
                            a: MapMethod::QueryToVisual,
                            b: MapMethod::Gradcam,
                            js_divergence: 0.04,
                            js_distance: 0.2 * (s + 1) as f64,
                        }],
                        sinks: Some(SinkCheck {
                            factor: 5.0,
                            generic_prompt: "Describe the image.".into(),
                            cells: vec![0; s],
                            mass: 0.1,
                            metrics_without: None,
                        }),
                        ..TrustRecord::default()
                    });
                }
                records.push(r);
            }
        }
        let mut notes = Vec::new();
        let boot = Boot::new(&fixture::manifest(7), &records, &mut notes).unwrap();
        let data = ModelData::new(fixture::A, &records, &mut notes).unwrap();
        let t = trust_summary(&data, &boot).unwrap().expect("six records have checks");
        assert_eq!(t.records, 6);
        let gradcam = t.faithfulness.iter().find(|f| f.method == MapMethod::Gradcam).unwrap();
        assert_eq!((gradcam.rows, gradcam.flagged), (6, 3));
        close(est(&gradcam.flag_rate), 0.5);
        let attention = t.faithfulness.iter().find(|f| f.method == MapMethod::QueryToVisual).unwrap();
        close(est(&attention.flag_rate), 0.0);
        close(attention.delta_top.mean, -0.5);
        let pair = &t.agreement[0];
        assert_eq!(pair.rows, 6);
        close(pair.js_distance.mean, 0.3);
        close(est(&pair.mean_js_distance), 0.3);
        // s1 has no sinks, s2 one cell; no maps, so no focus rows.
        let sinks = t.sinks.as_ref().unwrap();
        assert_eq!((sinks.studies, sinks.studies_with_sinks), (2, 1));
        close(sinks.cells.mean, 0.5);
        assert!(sinks.focus.is_none() && sinks.focus_without.is_none());
        let none = ModelData::new(fixture::B, &records, &mut notes).unwrap();
        assert!(trust_summary(&none, &boot).unwrap().is_none());
    }

    fn fixture_analysis(tag: &str) -> Analysis {
        let (dir, _) = fixture::write_run(tag, 7);
        analyze(&dir).unwrap()
    }

    #[test]
    fn answer_rates_match_hand_computation() {
        let a = fixture_analysis("rates");
        let (ma, mb) = (model(&a, A), model(&a, B));
        close(est(&ma.accuracy), 7.0 / 9.0);
        close(est(&ma.flip_rate), 2.0 / 6.0);
        close(est(&ma.full_consistency), 1.0 / 3.0);
        close(ma.cs_k[&1].estimate, 7.0 / 9.0);
        close(ma.cs_k[&2].estimate, 5.0 / 9.0);
        close(ma.cs_k[&3].estimate, 1.0 / 3.0);
        close(est(&mb.accuracy), 5.0 / 8.0);
        close(est(&mb.flip_rate), 2.0 / 5.0);
        close(est(&mb.full_consistency), 1.0 / 3.0);
        close(mb.cs_k[&1].estimate, 5.0 / 9.0);
        close(mb.cs_k[&2].estimate, 4.0 / 9.0);
        close(mb.cs_k[&3].estimate, 1.0 / 2.0);

        // Per strategy: flips of the pairs whose variant used it; accuracy of its rows.
        close(est(&ma.by_strategy["synonym"].flip_rate), 1.0 / 3.0);
        close(est(&ma.by_strategy["negation"].flip_rate), 1.0 / 3.0);
        assert!(ma.by_strategy["original"].flip_rate.is_none());
        close(est(&ma.by_strategy["original"].accuracy), 1.0);
        close(est(&ma.by_strategy["synonym"].accuracy), 2.0 / 3.0);
        close(est(&mb.by_strategy["synonym"].flip_rate), 1.0 / 2.0);
        close(est(&mb.by_strategy["negation"].flip_rate), 1.0 / 3.0);
        // Per finding: s1 and s3 are effusion, s2 pneumothorax.
        let eff = &ma.by_finding["effusion"];
        assert_eq!((eff.studies, eff.rows), (2, 6));
        close(est(&eff.accuracy), 5.0 / 6.0);
        close(est(&eff.full_consistency), 1.0 / 2.0);

        let s = |m: &str, id: &str| a.studies.iter().find(|s| s.model == m && s.study_id == id).unwrap();
        assert_eq!((s(A, "s2").flips, s(A, "s2").correct, s(A, "s2").fully_consistent), (1, 2, Some(false)));
        assert_eq!((s(B, "s3").variants, s(B, "s3").answered, s(B, "s3").errors, s(B, "s3").flips), (3, 2, 1, 1));
    }

    #[test]
    fn errors_and_duplicates_are_counted_and_excluded() {
        let a = fixture_analysis("errors");
        assert_eq!(a.records.read, 28);
        assert_eq!(a.records.duplicates, 1);
        assert_eq!((a.records.image_pass, a.records.blank_image_pass, a.records.errors), (18, 9, 1));
        let mb = model(&a, B);
        assert_eq!((mb.rows, mb.answered, mb.errors), (9, 8, 1));
        assert_eq!(mb.accuracy.as_ref().unwrap().estimate, 5.0 / 8.0);
        assert!(a.notes.iter().any(|n| n.contains("1 error records") && n.contains("excluded")), "{:?}", a.notes);
        assert!(a.notes.iter().any(|n| n.contains("duplicate")));
        // The duplicate (answer no) did not replace the first s1#0 record (answer yes).
        let s1 = a.studies.iter().find(|s| s.model == A && s.study_id == "s1").unwrap();
        assert_eq!(s1.correct, 3);
        // Error records have no latency in the summary: 8 rows for B.
        assert_eq!(mb.latency.total_ms.as_ref().unwrap().n, 8);
    }

    #[test]
    fn image_reliance_and_its_quadrants() {
        let a = fixture_analysis("reliance");
        let r = model(&a, A).image_reliance.as_ref().unwrap();
        assert_eq!((r.rows, r.studies), (9, 3));
        close(est(&r.rate), 1.0 / 9.0);
        assert_eq!(
            (
                r.consistent_reliant.studies,
                r.consistent_not_reliant.studies,
                r.inconsistent_reliant.studies,
                r.inconsistent_not_reliant.studies
            ),
            (0, 1, 1, 1)
        );
        close(est(&r.consistent_not_reliant.share), 1.0 / 3.0);
        close(est(&r.consistent_reliant.share), 0.0);
        close(est(&model(&a, A).blank_image_accuracy), 6.0 / 9.0);
        // Model B has no text-only records: no image reliance at all (not 0).
        assert!(model(&a, B).image_reliance.is_none());
        assert!(model(&a, B).blank_image_accuracy.is_none());
        let s1 = a.studies.iter().find(|s| s.model == A && s.study_id == "s1").unwrap();
        assert_eq!(s1.image_reliant, Some(false));
    }

    #[test]
    fn mcnemar_on_rows_both_models_answered() {
        let a = fixture_analysis("mcnemar");
        assert_eq!(a.comparisons.len(), 1);
        let c = &a.comparisons[0];
        assert_eq!((c.model_a.as_str(), c.model_b.as_str()), (A, B));
        // 8 paired rows (B's error row left out). b: s1#1, s3#0; c: s2#1.
        assert_eq!((c.rows, c.studies, c.mcnemar.b, c.mcnemar.c), (8, 3, 2, 1));
        // d = 1/3, -1/3, 1/2: chi2 = (1/2)^2 / (1/9 + 1/9 + 1/4) = 9/17.
        close(c.mcnemar.chi2, 9.0 / 17.0);
        // 2 P[Binomial(3, 1/2) <= 1] = 1.
        close(c.mcnemar.p_exact, 1.0);
        close(c.accuracy_a.unwrap(), 6.0 / 8.0);
        close(c.accuracy_b.unwrap(), 5.0 / 8.0);
        close(est(&c.accuracy_difference), 1.0 / 8.0);
    }

    #[test]
    fn intervals_hold_their_estimate_and_repeat_with_the_seed() {
        let a = fixture_analysis("ci");
        let m = model(&a, A);
        let all = [&m.accuracy, &m.flip_rate, &m.full_consistency, &m.blank_image_accuracy];
        for i in all.into_iter().flatten() {
            assert!(i.lo <= i.estimate && i.estimate <= i.hi, "{i:?}");
            assert_eq!((i.resamples, i.seed, i.unit.as_str()), (300, 7, "study"));
        }
        let b = fixture_analysis("ci-again");
        assert_eq!(a.models, b.models);
        let (dir, _) = fixture::write_run("ci-seed", 8);
        let other = analyze(&dir).unwrap();
        assert_eq!(model(&other, A).accuracy.as_ref().unwrap().seed, 8);
    }

    #[test]
    fn analysis_is_deterministic_and_independent_of_record_order() {
        let (dir, _) = fixture::write_run("determinism", 7);
        let one = serde_json::to_string_pretty(&analyze(&dir).unwrap()).unwrap();
        let two = serde_json::to_string_pretty(&analyze(&dir).unwrap()).unwrap();
        assert_eq!(one, two);
        let manifest = dir.read_manifest().unwrap();
        let mut records = dir.read_records().unwrap();
        // Reverse everything but the duplicate, which must stay after its original.
        let dup = records.pop().unwrap();
        records.reverse();
        records.push(dup);
        let shuffled = analyze_records(&manifest, &records, |t| dir.read_f32(t)).unwrap();
        assert_eq!(one, serde_json::to_string_pretty(&shuffled).unwrap());
    }

    #[test]
    fn map_statistics() {
        let a = fixture_analysis("maps");
        let s = |m: &str, id: &str| a.studies.iter().find(|s| s.model == m && s.study_id == id).unwrap().clone();
        // Identical maps within a study: consistency 1.
        close(s(A, "s1").map_consistency.unwrap(), 1.0);
        close(s(A, "s3").map_consistency.unwrap(), 1.0);
        assert!(s(A, "s2").map_consistency.unwrap() < 1.0);
        // B's s3 has one errored variant: two maps remain.
        close(s(B, "s3").map_consistency.unwrap(), 1.0);

        let ma = model(&a, A);
        let maps = ma.maps.as_ref().unwrap();
        assert_eq!(maps.maps, 9);
        assert_eq!(maps.methods["query_to_visual"], 9);
        // s1's box is the top-left quadrant; A's s1 maps put 4/7 there, on the top cell.
        let roi = maps.roi.as_ref().unwrap();
        assert_eq!(roi.rows, 3);
        close(est(&roi.relevance_mass), 4.0 / 7.0);
        close(est(&roi.pointing_game), 1.0);
        // Flipped rephrasings of A: s2#1, s3#2; stable: s1#1, s1#2, s2#2, s3#1.
        let f = ma.flipped_vs_stable.as_ref().unwrap();
        assert_eq!((f.flipped.rows, f.stable.rows), (2, 4));

        // Cross-model on the 4x4 common grid: s1 and s3 maps agree exactly, s2 do not.
        let cross = &a.cross_model[0];
        assert_eq!((cross.grid, cross.rows), (4, 8));
        for r in &cross.per_row {
            assert!((0.0..=1.0).contains(&r.js_divergence));
            close(r.js_distance, r.js_divergence.sqrt());
            if r.study_id == "s2" {
                assert!(r.js_divergence > 0.01, "{r:?}");
            } else {
                assert!(r.js_divergence < 1e-12, "{r:?}");
            }
        }
        // Most disagreeing first: s2 and s3 (2 flips each), s3's models also answer differently.
        assert_eq!(a.disagreements.len(), 3);
        assert_eq!(a.disagreements[0].study_id, "s3");
    }

    #[test]
    fn margins_and_latency() {
        let a = fixture_analysis("margins");
        let m = model(&a, A).yes_no_margin.as_ref().unwrap();
        assert_eq!(m.all.n, 9);
        // Wrong rows of A: s2#1 (yes, +3) and s3#2 (yes, +4).
        let wrong = m.wrong.as_ref().unwrap();
        assert_eq!(wrong.n, 2);
        close(wrong.mean, 3.5);
        assert!(model(&a, B).yes_no_margin.is_none());
        let l = &model(&a, A).latency;
        close(l.image_encode_ms.as_ref().unwrap().mean, 20.0 / 3.0);
        close(l.capture_ms.as_ref().unwrap().p95, 5.0);
    }

    #[test]
    fn contradictory_records_name_the_records_file() {
        let (dir, _) = fixture::write_run("bad", 7);
        let mut records = dir.read_records().unwrap();
        // A negated variant whose truth was not inverted.
        let r = records.iter_mut().find(|r| r.sample_id == "s1#2" && r.pass == Pass::Image).unwrap();
        r.ground_truth = r.ground_truth.map(Answer::invert);
        let manifest = dir.read_manifest().unwrap();
        let err = analyze_records(&manifest, &records, |t| dir.read_f32(t)).unwrap_err().in_dir(&dir);
        let text = err.to_string();
        assert!(text.contains(&dir.path(RECORDS).display().to_string()) && text.contains("s1"), "{text}");
    }

    #[test]
    fn bad_bootstrap_settings_name_the_manifest() {
        let (dir, _) = fixture::write_run("badboot", 7);
        let mut manifest = dir.read_manifest().unwrap();
        manifest.bootstrap.unit = "row".to_owned();
        dir.write_manifest(&manifest).unwrap();
        let text = analyze(&dir).unwrap_err().to_string();
        assert!(text.contains("manifest.json") && text.contains("bootstrap"), "{text}");
    }

    #[test]
    fn unreadable_maps_are_noted_not_fatal() {
        let (dir, _) = fixture::write_run("nomaps", 7);
        std::fs::remove_file(dir.path("attention/model-b.f32")).unwrap();
        let a = analyze(&dir).unwrap();
        assert!(model(&a, B).maps.is_none());
        assert!(
            a.notes.iter().any(|n| n.contains("model-b") && n.contains("could not be read") && n.contains("model-b.f32")),
            "{:?}",
            a.notes
        );
        close(est(&model(&a, B).accuracy), 5.0 / 8.0);
    }

    #[test]
    fn subject_unit_merges_studies_of_one_subject() {
        let (dir, _) = fixture::write_run("subject", 7);
        let mut manifest = dir.read_manifest().unwrap();
        manifest.bootstrap.unit = "subject".to_owned();
        let mut records = dir.read_records().unwrap();
        for r in &mut records {
            r.subject_id = Some(if r.study_id == "s3" { "p2" } else { "p1" }.to_owned());
        }
        let a = analyze_records(&manifest, &records, |t| dir.read_f32(t)).unwrap();
        let acc = model(&a, A).accuracy.as_ref().unwrap();
        close(acc.estimate, 7.0 / 9.0);
        assert_eq!(acc.unit, "subject");
        // Two clusters: p1 (s1 + s2: 5/6) and p2 (s3: 2/3); every resample is a mix of those.
        for x in [acc.lo, acc.hi] {
            assert!([5.0 / 6.0, 2.0 / 3.0, 7.0 / 9.0].iter().any(|v| (x - v).abs() < 1e-9), "{x}");
        }
    }

    #[test]
    fn summaries_use_numpy_quantiles() {
        let s = summarize(&[4.0, 1.0, 3.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.n, s.min, s.max), (4, 1.0, 4.0));
        close(s.mean, 2.5);
        close(s.median, 2.5);
        close(s.p95, 3.85);
        assert!(summarize(&[]).is_none());
    }
}
