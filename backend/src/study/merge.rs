//! `radlens merge`: the run directories of one study's shards (`radlens study --shard I/N`, a
//! Slurm array task or a Kubernetes Indexed Job pod each) put back together into one run
//! directory, as if the study had run unsharded.
//!
//! - The inputs must be shards of the same study: the same CSV (by digest), models (name,
//!   config, weights, dtype), capture and bootstrap settings, `--n-studies`, and shard count.
//!   Anything else is refused, naming the directory and what differs. Missing shard indices are
//!   a warning: the merged run is valid, only incomplete (resume it with the unsharded
//!   `radlens study` command to fill it in).
//! - The merged manifest is unsharded, and its fingerprint is the one an unsharded
//!   `radlens study` with the same inputs computes, so that command resumes the merged run.
//! - Records are deduplicated by [`CaseRecord::key`] (the first input wins) and sorted by model
//!   (manifest order), study, variant and pass.
//! - The attention data the records point to is copied into the merged run's own store
//!   (`attention/<model>.f32`, like a single run's) and every [`TensorRef`] is rewritten, so the
//!   merged directory stands alone. Unreferenced data (a killed run's tail, dropped duplicates)
//!   is left behind.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use radlens_shared::grounding::ModelRandomization;
use radlens_shared::record::{CaseRecord, ModelInfo, RunManifest, SCHEMA_VERSION, StudySource, TensorRef};
use serde_json::Value;

use super::run::fingerprint;
use super::run_dir::{
    ANALYSIS, ATTENTION, AttentionFile, MANIFEST, PLOTS, RANDOMIZATION, RECORDS, RECORDS_CSV, REPORT, RandomizationFile, RunDir,
};

/// What [`merge_runs`] did.
#[derive(Debug)]
pub struct MergeOutcome {
    pub manifest: RunManifest,
    /// Records written.
    pub records: usize,
    /// Records dropped because an earlier input (or the same one) had their key.
    pub duplicates: usize,
    /// Tensors copied into the merged attention store.
    pub tensors: usize,
    /// Shard indices `0..N` that no input holds.
    pub missing_shards: Vec<u32>,
    /// Things worth knowing that do not stop the merge (missing shards, unfinished shards, ...).
    pub warnings: Vec<String>,
}

/// One input: its directory, manifest and `--n-studies` (recovered from the fingerprint).
struct Input {
    dir: RunDir,
    manifest: RunManifest,
    shard: (u32, u32),
    n_studies: Option<usize>,
}

impl Input {
    fn name(&self) -> String {
        self.dir.root().display().to_string()
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The attention file name of a model, as `radlens study` makes it.
fn slug(model: &str) -> String {
    model.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// `dir` made absolute and, where it exists, canonical: to tell two spellings of one directory.
fn identity(dir: &Path) -> PathBuf {
    if let Ok(p) = dir.canonicalize() {
        return p;
    }
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().map(|c| c.join(dir)).unwrap_or_else(|_| dir.to_path_buf())
    };
    match (abs.parent().and_then(|p| p.canonicalize().ok()), abs.file_name()) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => abs,
    }
}

/// The fields of a model that decide its records (what the fingerprint covers).
fn model_identity(m: &ModelInfo) -> Value {
    serde_json::json!({"name": m.name, "config_sha256": m.config_sha256, "weights_fingerprint": m.weights_fingerprint, "dtype": m.dtype})
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The leaves where `a` and `b` differ: `(path, a's value, b's value)`.
fn differences(prefix: &str, a: &Value, b: &Value, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(&format!("{prefix}.{k}"), x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if a != b => out.push((prefix.to_string(), show(a), show(b))),
        _ => {}
    }
}

fn describe(n: Option<usize>) -> String {
    n.map_or_else(|| "all studies (no --n-studies)".to_string(), |n| format!("--n-studies {n}"))
}

/// The `--n-studies` a run was started with, checked against its fingerprint. `None` when the
/// fingerprint does not match (an edited manifest, or one written by another radlens).
fn recover_n_studies(m: &RunManifest) -> Option<Option<usize>> {
    let fp = fingerprint(&m.study.csv_sha256, &m.models, &m.capture, m.shard, m.n_studies);
    (fp == m.fingerprint).then_some(m.n_studies)
}

/// Reads and checks every input against the first: same study, same settings, shards of one
/// count. Returns them with warnings (missing, repeated or unfinished shards).
fn read_inputs(dirs: &[PathBuf], warnings: &mut Vec<String>) -> anyhow::Result<Vec<Input>> {
    if dirs.is_empty() {
        bail!("no run directories to merge");
    }
    let mut seen = BTreeMap::new();
    let mut inputs: Vec<Input> = Vec::with_capacity(dirs.len());
    for d in dirs {
        if let Some(other) = seen.insert(identity(d), d.clone()) {
            bail!("{} is given twice (also as {})", d.display(), other.display());
        }
        let dir = RunDir::open(d)?;
        let manifest = dir.read_manifest().with_context(|| format!("{}: cannot read its manifest", d.display()))?;
        let Some(shard) = manifest.shard else {
            bail!(
                "{}: not a shard (its manifest has no shard): merge combines the run directories of `radlens study --shard I/N` (or of Slurm array tasks / Kubernetes Indexed Job pods)",
                d.display()
            );
        };
        let Some(n_studies) = recover_n_studies(&manifest) else {
            bail!(
                "{}: its manifest's fingerprint does not match its own settings (edited by hand, or written by another radlens version: {}), so the merged run's fingerprint cannot be computed",
                d.display(),
                manifest.radlens_version
            );
        };
        inputs.push(Input { dir, manifest, shard, n_studies });
    }

    let first = &inputs[0];
    for input in &inputs[1..] {
        let (a, b) = (&input.manifest, &first.manifest);
        let (here, there) = (input.name(), first.name());
        let refuse = |what: String| -> anyhow::Error {
            anyhow::anyhow!("refusing to merge: {here} is not a shard of the same study as {there}: {what}")
        };
        let list = |d: Vec<(String, String, String)>| -> String {
            d.iter().map(|(what, a, b)| format!("{what} differs ({a} in {here}, {b} in {there})")).collect::<Vec<_>>().join("; ")
        };
        if a.study.csv_sha256 != b.study.csv_sha256 {
            return Err(refuse(format!(
                "the study CSV differs ({} with sha256 {} in {here}, {} with sha256 {} in {there})",
                a.study.csv_name, a.study.csv_sha256, b.study.csv_name, b.study.csv_sha256
            )));
        }
        let names = |m: &RunManifest| m.models.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
        if names(a) != names(b) {
            return Err(refuse(format!("the models differ ({} in {here}, {} in {there})", names(a).join(", "), names(b).join(", "))));
        }
        for (x, y) in a.models.iter().zip(&b.models) {
            let mut d = Vec::new();
            differences(&format!("model {}", x.name), &model_identity(x), &model_identity(y), &mut d);
            if !d.is_empty() {
                return Err(refuse(list(d)));
            }
        }
        let mut d = Vec::new();
        differences("capture", &serde_json::to_value(&a.capture)?, &serde_json::to_value(&b.capture)?, &mut d);
        differences("bootstrap", &serde_json::to_value(&a.bootstrap)?, &serde_json::to_value(&b.bootstrap)?, &mut d);
        if !d.is_empty() {
            return Err(refuse(list(d)));
        }
        if input.n_studies != first.n_studies {
            return Err(refuse(format!(
                "the number of studies differs ({} in {here}, {} in {there})",
                describe(input.n_studies),
                describe(first.n_studies)
            )));
        }
        if input.shard.1 != first.shard.1 {
            return Err(refuse(format!(
                "the shard count differs (shard {}/{} in {here}, {}/{} in {there}): shards of different counts split the studies differently",
                input.shard.0, input.shard.1, first.shard.0, first.shard.1
            )));
        }
        for (x, y) in a.models.iter().zip(&b.models) {
            if x.device != y.device {
                warnings.push(format!(
                    "model {} ran on {} in {} but on {} in {}: its numbers may differ slightly between shards",
                    x.name,
                    x.device,
                    input.name(),
                    y.device,
                    first.name()
                ));
            }
        }
        if a.radlens_version != b.radlens_version {
            warnings.push(format!(
                "{} was written by radlens {}, {} by radlens {}",
                input.name(),
                a.radlens_version,
                first.name(),
                b.radlens_version
            ));
        }
    }

    let count = first.shard.1;
    let mut by_index: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for input in &inputs {
        by_index.entry(input.shard.0).or_default().push(input.name());
    }
    for (i, names) in &by_index {
        if names.len() > 1 {
            warnings.push(format!(
                "shard {i}/{count} is given {} times ({}); records are deduplicated, the first wins",
                names.len(),
                names.join(", ")
            ));
        }
    }
    Ok(inputs)
}

/// Whether `out` may be written: refuses a run directory that holds records unless `force`;
/// clears what a previous run left there.
fn prepare_out(out: &Path, force: bool) -> anyhow::Result<RunDir> {
    let dir = RunDir::create(out)?;
    let manifest = dir.path(MANIFEST);
    let records = dir.path(RECORDS);
    let has_records = records.metadata().is_ok_and(|m| m.len() > 0);
    if !force {
        if manifest.exists() {
            let n = dir
                .read_records()
                .with_context(|| {
                    format!(
                        "{} holds a run directory whose records cannot be read; use another --out, or --force to replace it",
                        out.display()
                    )
                })?
                .len();
            if n > 0 {
                bail!(
                    "{} already holds a run ({n} records); refusing to overwrite it. Use another --out, or --force to replace it",
                    out.display()
                );
            }
        } else if has_records {
            bail!(
                "{} holds a {RECORDS} but no {MANIFEST}; refusing to overwrite it. Use another --out, or --force to replace it",
                out.display()
            );
        }
    }
    for name in [MANIFEST, RECORDS, ANALYSIS, REPORT, RECORDS_CSV, RANDOMIZATION] {
        let p = dir.path(name);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    for name in [ATTENTION, PLOTS] {
        let p = dir.path(name);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    std::fs::create_dir_all(dir.path(ATTENTION)).with_context(|| format!("cannot create {}", dir.path(ATTENTION).display()))?;
    Ok(dir)
}

/// The merged manifest: unsharded, the first input's study and settings, model details from
/// whichever input loaded the model, the earliest start, and the unsharded fingerprint.
fn merged_manifest(inputs: &[Input], out: &Path, arguments: &[String]) -> RunManifest {
    let first = &inputs[0].manifest;
    let mut models = first.models.clone();
    for (i, m) in models.iter_mut().enumerate() {
        for other in inputs.iter().filter_map(|x| x.manifest.models.get(i)) {
            if m.architecture.is_empty() && !other.architecture.is_empty() {
                m.architecture = other.architecture.clone();
            }
            if m.num_layers == 0 {
                m.num_layers = other.num_layers;
            }
            if m.num_heads == 0 {
                m.num_heads = other.num_heads;
            }
            if m.grid_h == 0 || m.grid_w == 0 {
                (m.grid_h, m.grid_w) = (other.grid_h, other.grid_w);
            }
            m.random_weights |= other.random_weights;
        }
    }
    let created_at = inputs
        .iter()
        .map(|x| &x.manifest.created_at)
        .min_by_key(|s| (humantime::parse_rfc3339_weak(s).ok(), s.as_str()))
        .cloned()
        .unwrap_or_else(now);
    // A shard given twice counts once.
    let mut counted = HashSet::new();
    let planned_rows = inputs.iter().filter(|x| counted.insert(x.shard.0)).map(|x| x.manifest.study.planned_rows).sum();
    RunManifest {
        schema_version: SCHEMA_VERSION,
        run_id: out.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned()),
        created_at,
        updated_at: now(),
        radlens_version: env!("CARGO_PKG_VERSION").into(),
        arguments: arguments.to_vec(),
        study: StudySource { planned_rows, ..first.study.clone() },
        fingerprint: fingerprint(&first.study.csv_sha256, &models, &first.capture, None, inputs[0].n_studies),
        models,
        capture: first.capture.clone(),
        bootstrap: first.bootstrap.clone(),
        shard: None,
        n_studies: inputs[0].n_studies,
        // Each shard sampled its own rows; their checks are merged (see `merged_randomization`)
        // and keep the per-shard request, so a resume with the same flag runs nothing again.
        randomization: inputs.iter().find_map(|x| x.manifest.randomization),
        near_tie_eps: inputs[0].manifest.near_tie_eps,
    }
}

/// The shards' randomisation checks, one per model: all its shards' samples together (each shard
/// counted once). A model checked by some shards only is merged from those, with a warning.
fn merged_randomization(inputs: &[Input], manifest: &RunManifest, warnings: &mut Vec<String>) -> anyhow::Result<RandomizationFile> {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for x in inputs.iter().filter(|x| seen.insert(x.shard.0)) {
        files.push((x, x.dir.read_randomization().with_context(|| format!("{}: cannot read its {RANDOMIZATION}", x.name()))?));
    }
    let mut out = RandomizationFile::default();
    for m in &manifest.models {
        let parts: Vec<ModelRandomization> =
            files.iter().filter_map(|(_, f)| f.models.iter().find(|r| r.model == m.name).cloned()).collect();
        if parts.is_empty() {
            continue;
        }
        if parts.len() < files.len() {
            warnings.push(format!(
                "{}: the randomisation check ran in {} of {} shards; the merged check has only their samples",
                m.name,
                parts.len(),
                files.len()
            ));
        }
        out.models.push(ModelRandomization::merged(&parts).with_context(|| format!("{}: merging the randomisation checks", m.name))?);
    }
    Ok(out)
}

/// Copies one tensor from `from` into the merged store and returns where it now is.
fn copy_tensor(from: &RunDir, t: &TensorRef, to: &mut AttentionFile) -> anyhow::Result<TensorRef> {
    let values = from
        .read_f32(t)
        .with_context(|| format!("{}: cannot read the attention data at {} offset {}", from.root().display(), t.file, t.offset))?;
    Ok(to.append(&values, t.shape.clone())?)
}

/// Merges the shard run directories `inputs` into the run directory `out` (manifest, records,
/// attention store). The analysis, figures and report are left to `radlens report`.
pub fn merge_runs(inputs: &[PathBuf], out: &Path, force: bool) -> anyhow::Result<MergeOutcome> {
    merge_runs_as(inputs, out, force, &[])
}

/// [`merge_runs`], recording `arguments` (the merge's command line) in the merged manifest.
pub fn merge_runs_as(inputs: &[PathBuf], out: &Path, force: bool, arguments: &[String]) -> anyhow::Result<MergeOutcome> {
    let mut warnings = Vec::new();
    let inputs = read_inputs(inputs, &mut warnings)?;
    let out_id = identity(out);
    if let Some(x) = inputs.iter().find(|x| identity(x.dir.root()) == out_id) {
        bail!("--out {} is one of the inputs ({}); merge into a new directory", out.display(), x.name());
    }

    let count = inputs[0].shard.1;
    let present: BTreeSet<u32> = inputs.iter().map(|x| x.shard.0).collect();
    let missing_shards: Vec<u32> = (0..count).filter(|i| !present.contains(i)).collect();
    if !missing_shards.is_empty() {
        let list: Vec<String> = missing_shards.iter().map(|i| format!("{i}/{count}")).collect();
        warnings.push(format!(
            "missing shard(s) {}: the merged run lacks their studies (run them and merge again, or resume the merged run with the unsharded `radlens study` command)",
            list.join(", ")
        ));
    }

    // Every record, first input first; then the first of each key, in a stable order.
    let mut seen = HashSet::new();
    let mut kept: Vec<(usize, CaseRecord)> = Vec::new();
    let mut read = 0;
    let capture = &inputs[0].manifest.capture;
    let passes = super::conditions::condition_passes(capture.text_only_pass, &capture.conditions).len();
    for (i, input) in inputs.iter().enumerate() {
        let records = input.dir.read_records().with_context(|| format!("{}: cannot read its records", input.name()))?;
        read += records.len();
        let distinct: HashSet<_> = records.iter().map(CaseRecord::key).collect();
        let planned = input.manifest.study.planned_rows * passes * input.manifest.models.len();
        if distinct.len() < planned {
            warnings.push(format!(
                "{} (shard {}/{count}) holds {} of its {planned} planned records: an unfinished run? Rerun its `radlens study` command to complete it, then merge again",
                input.name(),
                input.shard.0,
                distinct.len()
            ));
        }
        for r in records {
            if seen.insert(r.key()) {
                kept.push((i, r));
            }
        }
    }
    let duplicates = read - kept.len();
    let manifest = merged_manifest(&inputs, out, arguments);
    let model_index = |m: &str| manifest.models.iter().position(|x| x.name == m).unwrap_or(usize::MAX);
    kept.sort_by(|(_, a), (_, b)| {
        (model_index(&a.model), &a.model, &a.study_id, a.variant_index, a.pass, &a.sample_id, a.csv_line).cmp(&(
            model_index(&b.model),
            &b.model,
            &b.study_id,
            b.variant_index,
            b.pass,
            &b.sample_id,
            b.csv_line,
        ))
    });

    let dir = prepare_out(out, force)?;
    // Attention first (flushed), then the records that point to it, then the manifest: a
    // directory with a manifest is a finished merge.
    let mut stores: BTreeMap<String, AttentionFile> = BTreeMap::new();
    let mut tensors = 0;
    let mut records = Vec::with_capacity(kept.len());
    for (i, mut r) in kept {
        if let Some(map) = r.map.as_mut() {
            let name = slug(&r.model);
            let store = match stores.entry(name) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let f = AttentionFile::open(&dir, e.key())?;
                    e.insert(f)
                }
            };
            let from = &inputs[i].dir;
            map.values = copy_tensor(from, &map.values, store)?;
            map.head_rows = copy_tensor(from, &map.head_rows, store)?;
            tensors += 2;
            // The other methods' maps, and a multi-image row's per-image maps with theirs (issue
            // 21), point into the same file.
            for m in r.trust.iter_mut().flat_map(|t| t.maps.iter_mut()) {
                m.values = copy_tensor(from, &m.values, store)?;
                tensors += 1;
            }
            for image in r.images.iter_mut() {
                image.values = copy_tensor(from, &image.values, store)?;
                tensors += 1;
                for m in image.methods.iter_mut() {
                    m.values = copy_tensor(from, &m.values, store)?;
                    tensors += 1;
                }
            }
        }
        records.push(r);
    }
    for store in stores.values_mut() {
        store.flush()?;
    }
    let path = dir.path(RECORDS);
    let tmp = dir.path(&format!("{RECORDS}.tmp"));
    {
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(file);
        for r in &records {
            serde_json::to_writer(&mut w, r)?;
            w.write_all(b"\n")?;
        }
        w.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    let randomization = merged_randomization(&inputs, &manifest, &mut warnings)?;
    if !randomization.models.is_empty() {
        dir.write_json_atomic(RANDOMIZATION, &randomization)?;
    }
    dir.write_manifest(&manifest)?;
    Ok(MergeOutcome { manifest, records: records.len(), duplicates, tensors, missing_shards, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::analysis::analyze_records;
    use crate::study::analysis::fixture;
    use crate::study::shard::Shard;

    /// Splits the fixture run into `count` shard directories, as `radlens study --shard` would
    /// have written them (each with a copy of the attention store).
    fn shards(tag: &str, count: u32, n_studies: Option<usize>) -> (RunDir, Vec<PathBuf>) {
        let (single, _) = fixture::write_run(tag, 7);
        let mut m = single.read_manifest().unwrap();
        m.n_studies = n_studies;
        m.fingerprint = fingerprint(&m.study.csv_sha256, &m.models, &m.capture, None, n_studies);
        single.write_manifest(&m).unwrap();
        let records = single.read_records().unwrap();
        let root = single.root().parent().unwrap().to_path_buf();
        let mut dirs = Vec::new();
        for index in 0..count {
            let s = Shard { index, count };
            let dir = RunDir::create(&root.join(format!("shard-{index}"))).unwrap();
            for e in std::fs::read_dir(single.path(ATTENTION)).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dir.path(ATTENTION).join(e.file_name())).unwrap();
            }
            let mine: Vec<&CaseRecord> = records.iter().filter(|r| s.owns(&r.study_id)).collect();
            let mut sm = m.clone();
            sm.shard = Some((index, count));
            sm.n_studies = n_studies;
            sm.study.planned_rows = mine.iter().map(|r| &r.sample_id).collect::<BTreeSet<_>>().len();
            sm.fingerprint = fingerprint(&m.study.csv_sha256, &m.models, &m.capture, sm.shard, n_studies);
            dir.write_manifest(&sm).unwrap();
            let text: String = mine.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
            std::fs::write(dir.path(RECORDS), text).unwrap();
            dirs.push(dir.root().to_path_buf());
        }
        (single, dirs)
    }

    #[test]
    fn merged_shards_equal_the_single_run() {
        let (single, dirs) = shards("merge-eq", 2, Some(3));
        let out = single.root().parent().unwrap().join("merged");
        let outcome = merge_runs(&dirs, &out, false).unwrap();
        assert!(outcome.missing_shards.is_empty(), "{:?}", outcome.warnings);
        let m = single.read_manifest().unwrap();
        assert_eq!(outcome.manifest.fingerprint, m.fingerprint);
        assert_eq!(outcome.manifest.shard, None);

        let merged = RunDir::open(&out).unwrap();
        let a = single.read_records().unwrap();
        let b = merged.read_records().unwrap();
        // The fixture's single run holds one duplicate; the merge keeps the first of each key.
        let (a_kept, _) = crate::study::analysis::dedupe_and_sort(&a);
        let (b_kept, dups) = crate::study::analysis::dedupe_and_sort(&b);
        assert_eq!(dups, 0);
        assert_eq!(a_kept.len(), b_kept.len());
        for (x, y) in a_kept.iter().zip(&b_kept) {
            assert_eq!(x.key(), y.key());
            assert_eq!(x.parsed_answer, y.parsed_answer);
            match (&x.map, &y.map) {
                (Some(p), Some(q)) => {
                    assert!(q.values.file.starts_with("attention/"));
                    assert_eq!(single.read_f32(&p.values).unwrap(), merged.read_f32(&q.values).unwrap());
                    assert_eq!(single.read_f32(&p.head_rows).unwrap(), merged.read_f32(&q.head_rows).unwrap());
                }
                (None, None) => {}
                _ => panic!("map presence differs for {:?}", x.key()),
            }
        }
        // Deterministic order: model, study, variant, pass.
        let order: Vec<_> = b.iter().map(|r| (r.model.clone(), r.study_id.clone(), r.variant_index, r.pass)).collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|(m, s, v, p)| (outcome.manifest.models.iter().position(|x| &x.name == m), s.clone(), *v, *p));
        assert_eq!(order, sorted);

        let mut mm = merged.read_manifest().unwrap();
        mm.run_id = m.run_id.clone();
        let x = analyze_records(&m, &a, |t| single.read_f32(t)).unwrap();
        let y = analyze_records(&mm, &b, |t| merged.read_f32(t)).unwrap();
        // The single run's duplicate is noted there only.
        assert_eq!(x.models, y.models);
        assert_eq!(x.studies, y.studies);
        assert_eq!(x.comparisons, y.comparisons);
        assert_eq!(x.cross_model, y.cross_model);

        // Not again into the same place without --force; with it, the same result.
        let err = merge_runs(&dirs, &out, false).unwrap_err().to_string();
        assert!(err.contains("already holds a run"), "{err}");
        let again = merge_runs(&dirs, &out, true).unwrap();
        assert_eq!(again.records, outcome.records);
        assert_eq!(RunDir::open(&out).unwrap().read_records().unwrap(), b);
    }

    #[test]
    fn the_shards_randomisation_checks_merge_into_one_per_model() {
        use radlens_shared::grounding::{CascadeStep, CascadeStepValues, RandomizationSettings};
        let (single, dirs) = shards("merge-random", 3, Some(3));
        let model = single.read_manifest().unwrap().models[0].name.clone();
        let settings = RandomizationSettings { samples: 1, seed: 9 };
        // Shards 0 and 1 ran the check on one row each; shard 2 did not.
        for (i, (id, rho)) in [("s0#0", 0.2), ("s1#0", 0.6)].into_iter().enumerate() {
            let steps = vec![
                CascadeStepValues { step: CascadeStep::Layers(1), spearman: vec![Some(rho)] },
                CascadeStepValues { step: CascadeStep::Vision, spearman: vec![Some(rho / 2.0)] },
            ];
            let check = ModelRandomization::new(model.clone(), settings, 1, vec![id.into()], steps, vec![]);
            let dir = RunDir::open(&dirs[i]).unwrap();
            dir.write_json_atomic(RANDOMIZATION, &RandomizationFile { models: vec![check] }).unwrap();
            let mut m = dir.read_manifest().unwrap();
            m.randomization = Some(settings);
            dir.write_manifest(&m).unwrap();
        }
        let out = single.root().parent().unwrap().join("merged-random");
        let outcome = merge_runs(&dirs, &out, false).unwrap();
        assert_eq!(outcome.manifest.randomization, Some(settings), "the per-shard request");
        assert!(outcome.warnings.iter().any(|w| w.contains("ran in 2 of 3 shards")), "{:?}", outcome.warnings);
        let merged = RunDir::open(&out).unwrap().read_randomization().unwrap();
        assert_eq!(merged.models.len(), 1);
        let m = &merged.models[0];
        assert_eq!(m.sample_ids, ["s0#0", "s1#0"]);
        assert!((m.curve.points[0].spearman.unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(m.insensitive, Some(false));
        // Merging again with --force replaces it; a merge of shards without checks leaves none.
        for d in &dirs {
            let _ = std::fs::remove_file(RunDir::open(d).unwrap().path(RANDOMIZATION));
        }
        merge_runs(&dirs, &out, true).unwrap();
        assert!(!RunDir::open(&out).unwrap().path(RANDOMIZATION).exists());
    }

    #[test]
    fn missing_shards_warn_and_mismatches_are_refused() {
        let (single, dirs) = shards("merge-refuse", 3, None);
        let root = single.root().parent().unwrap().to_path_buf();
        let outcome = merge_runs(&dirs[..2], &root.join("partial"), false).unwrap();
        assert_eq!(outcome.missing_shards, vec![2]);
        assert!(outcome.warnings.iter().any(|w| w.contains("2/3")), "{:?}", outcome.warnings);

        // Another capture setting (with a fingerprint to match, as a real run would write).
        let odd = RunDir::open(&dirs[2]).unwrap();
        let mut m = odd.read_manifest().unwrap();
        m.capture.max_new_tokens = 3;
        m.fingerprint = fingerprint(&m.study.csv_sha256, &m.models, &m.capture, m.shard, None);
        odd.write_manifest(&m).unwrap();
        let err = merge_runs(&dirs, &root.join("refused"), false).unwrap_err().to_string();
        assert!(err.contains("shard-2") && err.contains("capture.max_new_tokens differs (3 in"), "{err}");
        assert!(!root.join("refused").join(MANIFEST).exists());

        // Another --n-studies.
        m.capture.max_new_tokens = 8;
        m.n_studies = Some(2);
        m.fingerprint = fingerprint(&m.study.csv_sha256, &m.models, &m.capture, m.shard, Some(2));
        odd.write_manifest(&m).unwrap();
        let err = merge_runs(&dirs, &root.join("refused"), false).unwrap_err().to_string();
        assert!(err.contains("--n-studies 2") && err.contains("no --n-studies"), "{err}");

        // Another shard count.
        m.shard = Some((2, 4));
        m.n_studies = None;
        m.fingerprint = fingerprint(&m.study.csv_sha256, &m.models, &m.capture, m.shard, None);
        odd.write_manifest(&m).unwrap();
        let err = merge_runs(&dirs, &root.join("refused"), false).unwrap_err().to_string();
        assert!(err.contains("2/4") && err.contains("/3"), "{err}");

        // An unsharded run, an edited manifest, the output among the inputs.
        let err = merge_runs(&[dirs[0].clone(), single.root().to_path_buf()], &root.join("refused"), false).unwrap_err().to_string();
        assert!(err.contains("not a shard"), "{err}");
        m.shard = Some((2, 3));
        m.fingerprint = "edited".into();
        odd.write_manifest(&m).unwrap();
        let err = merge_runs(&dirs, &root.join("refused"), false).unwrap_err().to_string();
        assert!(err.contains("fingerprint"), "{err}");
        let err = merge_runs(&dirs[..2], &dirs[1], true).unwrap_err().to_string();
        assert!(err.contains("is one of the inputs"), "{err}");
        let err = merge_runs(&[dirs[0].clone(), dirs[0].clone()], &root.join("refused"), false).unwrap_err().to_string();
        assert!(err.contains("given twice"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn n_studies_is_read_from_the_manifest_and_checked_against_the_fingerprint() {
        let (single, _) = fixture::write_run("merge-n", 1);
        let mut m = single.read_manifest().unwrap();
        m.shard = Some((1, 4));
        for n in [None, Some(0), Some(2), Some(3), Some(50), Some(700_000)] {
            m.n_studies = n;
            m.fingerprint = fingerprint(&m.study.csv_sha256, &m.models, &m.capture, m.shard, n);
            assert_eq!(recover_n_studies(&m), Some(n));
        }
        // A manifest whose n_studies was edited no longer matches its fingerprint.
        m.n_studies = Some(4);
        assert_eq!(recover_n_studies(&m), None);
        let _ = std::fs::remove_dir_all(single.root().parent().unwrap());
    }
}
