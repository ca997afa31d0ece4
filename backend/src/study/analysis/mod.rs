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
//!
//! The files: this one holds the entry points ([`analyze`], [`analyze_records`]), the record
//! bookkeeping, and the state every statistic shares (the bootstrap settings `Boot`, the
//! loaded maps `Maps`, one model's rows grouped by study `ModelData`), so the concern files
//! import only from here, never from each other:
//! - `robustness.rs`: accuracy, flip rate, consistency, by strategy and finding, image
//!   reliance, margins, latency;
//! - `maps.rs`: map metrics, ROI, attention consistency, cross-model JS divergence;
//! - `trust.rs`: method agreement, faithfulness flag rates, sinks;
//! - `grounding.rs`, `null_edits.rs`: occlusion agreement, box controls and box score (G1-G3);
//!   the null edits' stability and paraphrase-to-null ratios (G4);
//! - `comparisons.rs`: McNemar and paired differences, flipped-vs-stable maps, disagreements;
//! - `fixture.rs` (tests only): the hand-computed synthetic run the tests here and in
//!   `plots`/`report`/`merge` use.

mod comparisons;
mod conditions;
mod decision;
#[cfg(test)]
pub(crate) mod fixture;
mod grounding;
mod maps;
mod null_edits;
mod robustness;
mod trust;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use radlens_shared::answer::{Answer, is_yes_no_question, parse_answer};
use radlens_shared::fusion::MapMethod;
use radlens_shared::record::{
    Analysis, CaseRecord, ModelAnalysis, Pass, RandomizationSummary, RecordCounts, RunManifest, SCHEMA_VERSION, StudySummary, Summary,
    TensorRef,
};
use radlens_shared::stats::{
    BootstrapConfig, ClusterRatio, DEFAULT_LEVEL, Interval, Study, UNIT_SUBJECT, VariantRow, cluster_bootstrap, consensus_score,
    group_studies, percentile_linear,
};
use radlens_shared::{AttentionMap, MetricError};
use thiserror::Error;

use self::comparisons::{compare_models, disagreements, flipped_vs_stable};
use self::maps::{cross_model_maps, map_summary, study_map_consistency, study_records};
use self::robustness::{
    accuracy_part, blank_image_accuracy, by_finding, by_strategy, consistency_part, flip_part, fully_consistent, image_reliance,
    image_reliant, latency, margins,
};
use self::trust::trust_summary;
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
    analyze_run(dir, &manifest, &records)
}

/// [`analyze`] with the manifest and records already read: the records' analysis and the run
/// directory's randomisation check.
pub fn analyze_run(dir: &RunDir, manifest: &RunManifest, records: &[CaseRecord]) -> Result<Analysis> {
    let mut analysis = analyze_records(manifest, records, |t| dir.read_f32(t)).map_err(|e| e.in_dir(dir))?;
    // The randomisation check lives beside the records (it re-runs sampled rows, it is no record).
    for check in dir.read_randomization()?.models {
        if let Some(m) = analysis.models.iter_mut().find(|m| m.model == check.model) {
            m.randomization = Some(RandomizationSummary {
                inputs: check.sample_ids.len(),
                curve: check.curve,
                insensitive: check.insensitive,
                notes: check.notes,
            });
        }
    }
    Ok(analysis)
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
            "{} image-pass records without an error have no parsed answer, no yes/no ground truth or no closed yes/no question ({} of them) and are left out of the answer statistics (accuracy, flips, consistency, decision quality).",
            counts.unscorable, counts.not_yes_no_questions
        ));
    }

    let maps = load_maps(&records, &mut load_map, &mut notes);
    let mut models = Vec::with_capacity(model_names.len());
    let mut studies = Vec::new();
    let mut per_model_rows = BTreeMap::new();
    for name in &model_names {
        let random_weights = manifest.models.iter().any(|m| &m.name == name && m.random_weights);
        let purpose = manifest.models.iter().find(|m| &m.name == name).and_then(|m| m.purpose.clone());
        let data = ModelData::new(name, &records, &mut notes)?;
        let summaries = study_summaries(&data, &maps, &mut notes);
        models.push(ModelAnalysis { purpose, ..analyze_model(&data, random_weights, &boot, &maps, &summaries, manifest.near_tie_eps())? });
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
        unscorable: image.clone().filter(|r| r.error.is_none() && scorable(r).is_none()).count(),
        not_yes_no_questions: image.filter(|r| r.error.is_none() && !is_yes_no_question(&r.question)).count(),
    }
}

/// The parsed answer, parsing the text when only the text was stored.
fn answer_of(r: &CaseRecord) -> Option<Answer> {
    r.parsed_answer.or_else(|| r.answer_text.as_deref().map(parse_answer))
}

/// `(answer, truth)` of a record the answer statistics can use: no error, an answer, a yes/no
/// ground truth (unknown truth cannot be scored), and a closed yes/no question
/// ([`is_yes_no_question`]: an open question's answer is no yes or no to compare, nor a flip).
fn scorable(r: &CaseRecord) -> Option<(Answer, Answer)> {
    if r.error.is_some() || !is_yes_no_question(&r.question) {
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

    /// The cluster a study is resampled with (itself, or its subject).
    fn cluster_of(&self, study: &str) -> String {
        self.cluster.get(study).cloned().unwrap_or_else(|| study.to_owned())
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

// ---------------------------------------------------------------------------------------------
// One model

/// One model's records, split by pass, and its scorable image-pass rows grouped by study.
struct ModelData<'a> {
    name: String,
    image: Vec<&'a CaseRecord>,
    blank: Vec<&'a CaseRecord>,
    /// The other image conditions' records (G6).
    conditions: Vec<&'a CaseRecord>,
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
        let blank: Vec<&CaseRecord> = mine.clone().filter(|r| r.pass == Pass::BlankImage).collect();
        let conditions: Vec<&CaseRecord> = mine.filter(|r| !matches!(r.pass, Pass::Image | Pass::BlankImage)).collect();
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
        Ok(Self { name: name.to_owned(), image, blank, conditions, rows, studies })
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

fn analyze_model(
    data: &ModelData,
    random_weights: bool,
    boot: &Boot,
    maps: &Maps,
    summaries: &[StudySummary],
    eps: f64,
) -> Result<ModelAnalysis> {
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
        purpose: None,
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
        grounding: grounding::grounding_summary(data, boot)?,
        null_edits: null_edits::null_edit_summaries(data, summaries, boot)?,
        // Filled in by [`analyze`] from the run directory's randomisation check.
        randomization: None,
        conditions: conditions::condition_analysis(data, boot)?,
        decision: decision::decision_summary(data, boot, eps, None)?,
        decision_by_strategy: {
            let strategies: BTreeSet<&str> = data.image.iter().filter(|r| r.variant_index != 0).map(|r| r.strategy.as_str()).collect();
            let mut by = BTreeMap::new();
            for st in strategies {
                if let Some(d) = decision::decision_summary(data, boot, eps, Some(st))? {
                    by.insert(st.to_owned(), d);
                }
            }
            by
        },
        images: image_role_summaries(&data.image),
    })
}

/// Multi-image records' per-image maps, by role (issue 21).
fn image_role_summaries(records: &[&CaseRecord]) -> BTreeMap<String, radlens_shared::record::ImageRoleSummary> {
    let mut by: BTreeMap<String, Vec<&radlens_shared::record::ImageMapRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.error.is_none()) {
        for i in &r.images {
            by.entry(i.role.clone()).or_default().push(i);
        }
    }
    by.into_iter()
        .map(|(role, maps)| {
            let of = |f: fn(&radlens_shared::record::ImageMapRecord) -> f64| summarize(&maps.iter().map(|m| f(m)).collect::<Vec<_>>());
            // Each other method's share of its own map's mass on this role's image.
            let mut shares: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for m in maps.iter().flat_map(|m| &m.methods) {
                shares.entry(m.provenance.method.to_string()).or_default().push(m.image_mass_share);
            }
            let summary = radlens_shared::record::ImageRoleSummary {
                records: maps.len(),
                mass_share: of(|m| m.image_mass_share),
                entropy_nats: of(|m| m.metrics.entropy_nats),
                focus: of(|m| m.metrics.focus),
                methods: shares.into_iter().filter_map(|(k, v)| Some((k, summarize(&v)?))).collect(),
            };
            (role, summary)
        })
        .collect()
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
                null_edits: null_edits::study_null_edits(data, id, maps, notes),
            }
        })
        .collect()
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
    fn open_questions_are_kept_out_of_the_answer_statistics_and_counted() {
        let (dir, _) = fixture::write_run("open-question", 7);
        let manifest = dir.read_manifest().unwrap();
        let mut records = dir.read_records().unwrap();
        let before = analyze_records(&manifest, &records, |t| dir.read_f32(t)).unwrap();
        let r = records.iter_mut().find(|r| r.sample_id == "s1#1" && r.pass == Pass::Image && r.model == A).unwrap();
        r.question = "Which lobe holds the finding?".into();
        let after = analyze_records(&manifest, &records, |t| dir.read_f32(t)).unwrap();
        assert_eq!((before.records.not_yes_no_questions, after.records.not_yes_no_questions), (0, 1));
        assert_eq!(after.records.unscorable, before.records.unscorable + 1);
        assert_eq!(model(&after, A).answered, model(&before, A).answered - 1, "its answer is not scored");
        let d = |a: &Analysis| model(a, A).decision.as_ref().map_or(0, |d| d.not_yes_no);
        assert_eq!(d(&after), d(&before) + 1, "nor used for decision quality");
        assert!(after.notes.iter().any(|n| n.contains("closed yes/no question (1 of them)")), "{:?}", after.notes);
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
