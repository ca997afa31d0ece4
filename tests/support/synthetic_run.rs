//! A large synthetic run made from a small real one, for the dashboard's scale tests and its
//! benchmark: the template's records, whole studies at a time, copied under new study ids until
//! there are `n` records, with answers (and so `correct`) and margins redrawn by a seeded
//! generator. Maps point into the template's attention store (copied along), so every record
//! is a real `CaseRecord` with a readable map; the manifest's study counts are updated.

use std::collections::BTreeMap;
use std::path::Path;

use radlens::study::run_dir::{ATTENTION, MANIFEST, RECORDS, RunDir};
use radlens_shared::answer::Answer;
use radlens_shared::record::CaseRecord;

/// splitmix64: a deterministic stream without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes a run of exactly `n` records into `out` (created) from the run directory `template`.
/// Returns the records written.
pub fn scale_up(template: &Path, out: &Path, n: usize, seed: u64) -> Vec<CaseRecord> {
    let src = RunDir::open(template).expect("template run");
    let records = src.read_records().expect("template records");
    assert!(!records.is_empty(), "the template run has no records");
    let mut by_study: BTreeMap<String, Vec<CaseRecord>> = BTreeMap::new();
    for r in records {
        by_study.entry(r.study_id.clone()).or_default().push(r);
    }
    let blocks: Vec<Vec<CaseRecord>> = by_study.into_values().collect();

    std::fs::create_dir_all(out).expect("create the synthetic run");
    copy_tree(&template.join(ATTENTION), &out.join(ATTENTION));
    let mut rng = Rng(seed);
    let mut written = Vec::with_capacity(n);
    let mut studies = 0usize;
    'outer: for copy in 0.. {
        for block in &blocks {
            studies += 1;
            for t in block {
                if written.len() == n {
                    break 'outer;
                }
                let mut r = t.clone();
                r.study_id = format!("{}-x{copy:04}", t.study_id);
                r.sample_id = format!("{}#{}", r.study_id, r.variant_index);
                if r.error.is_none() && r.parsed_answer.is_some() {
                    let yes = rng.unit() < 0.5;
                    r.parsed_answer = Some(if yes { Answer::Yes } else { Answer::No });
                    r.answer_text = Some(if yes { "Yes." } else { "No." }.to_owned());
                    r.correct = r.ground_truth.map(|g| Some(g) == r.parsed_answer);
                    let m = 0.2 + 3.0 * rng.unit();
                    r.yes_no_margin = Some(if yes { m } else { -m });
                }
                written.push(r);
            }
        }
    }
    let mut lines = String::with_capacity(n * 1500);
    for r in &written {
        lines.push_str(&serde_json::to_string(r).expect("record json"));
        lines.push('\n');
    }
    std::fs::write(out.join(RECORDS), lines).expect("write records.jsonl");
    let mut manifest = src.read_manifest().expect("template manifest");
    manifest.run_id = format!("{}-x{n}", manifest.run_id);
    manifest.study.studies = studies;
    manifest.study.rows = written.len() / manifest.models.len().max(1);
    manifest.study.planned_rows = manifest.study.rows;
    std::fs::write(out.join(MANIFEST), serde_json::to_string_pretty(&manifest).expect("manifest json")).expect("write manifest.json");
    written
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for e in std::fs::read_dir(from).expect("read template folder").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy file");
        }
    }
}

/// A copy of the run `template` (its records, manifest and attention store) into `out` whose
/// image-pass records carry **synthetic** G4 null edits (`contrast90`, `jpeg90`) on their own
/// map's grounding entry, for testing the dashboard's null-edit views on stored maps whatever
/// the backend makes. The (study, model) groups alternate, in their order of first appearance:
/// even ones get null distances near 1 bit (far above any paraphrase distance between distinct
/// maps: their maps "move more under a null edit"), odd ones 1e-4 bits (far below). Returns the
/// records written.
pub fn with_null_edits(template: &Path, out: &Path) -> Vec<CaseRecord> {
    use radlens_shared::grounding::{CaseGrounding, GroundingRecord, MethodGrounding, NullEdit, NullEditRecord};
    use radlens_shared::record::Pass;
    let src = RunDir::open(template).expect("template run");
    let mut records = src.read_records().expect("template records");
    let mut groups: Vec<(String, String)> = Vec::new();
    for r in records.iter_mut().filter(|r| r.pass == Pass::Image && r.error.is_none()) {
        let Some(own) = r.map.as_ref().map(|m| m.provenance.method) else { continue };
        let key = (r.study_id.clone(), r.model.clone());
        let k = groups.iter().position(|g| *g == key).unwrap_or_else(|| {
            groups.push(key);
            groups.len() - 1
        });
        let base = if k % 2 == 0 { 0.9 } else { 1e-4 };
        let edits: Vec<NullEditRecord> = NullEdit::ALL
            .iter()
            .enumerate()
            .map(|(j, &edit)| NullEditRecord {
                edit,
                answer_equal: !(r.variant_index as usize + j).is_multiple_of(3),
                margin_delta: Some(0.01 * (r.variant_index as f64 + 1.0) * if j == 0 { 1.0 } else { -1.0 }),
                js_distance: base * (1.0 + 0.01 * r.variant_index as f64 + 0.001 * j as f64),
            })
            .collect();
        let g = r.grounding.get_or_insert_with(CaseGrounding::default);
        match g.maps.iter_mut().find(|m| m.method == own) {
            Some(m) => m.figures.null_edits = edits,
            None => g.maps.push(MethodGrounding { method: own, figures: GroundingRecord { null_edits: edits, ..Default::default() } }),
        }
    }
    std::fs::create_dir_all(out).expect("create the run copy");
    copy_tree(&template.join(ATTENTION), &out.join(ATTENTION));
    let lines: String = records.iter().map(|r| serde_json::to_string(r).expect("record json") + "\n").collect();
    std::fs::write(out.join(RECORDS), lines).expect("write records.jsonl");
    let mut manifest = src.read_manifest().expect("template manifest");
    manifest.run_id = format!("{}-null-edits", manifest.run_id);
    std::fs::write(out.join(MANIFEST), serde_json::to_string_pretty(&manifest).expect("manifest json")).expect("write manifest.json");
    records
}
