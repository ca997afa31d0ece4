//! `radlens variants`: a study CSV of base questions -> the same CSV with rule-based paraphrases
//! (`shared::variants`) and/or variants written elsewhere (`--from variants.jsonl`), each with
//! its `strategy`, `polarity` and the answer that follows from them.
//!
//! The input is read by the study's own reader and must have no problem. Each study's variant 0
//! is its base; rows it already has are kept, new variants are numbered after them. A rule that
//! cannot make a grammatical question is skipped and counted by reason.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use radlens_shared::answer::{Answer, is_yes_no_question};
use radlens_shared::variants::{self, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::import::ImportError;
use crate::import::json::{Flow, for_each_record};
use crate::import::writer::{CsvOut, STUDY_COLUMNS, number};
use crate::study::plan::{PlanError, StudyRow, read_plan};

#[derive(Debug, Clone)]
pub struct VariantsOptions {
    pub csv: PathBuf,
    pub out: PathBuf,
    /// The rules to apply, in order (`None`: every rule, unless `from` is given).
    pub strategies: Option<Vec<Strategy>>,
    /// At most this many new rule-based variants per base question (chosen by the seed).
    pub per_question: Option<usize>,
    pub seed: u64,
    pub from: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantsSummary {
    pub bases: usize,
    pub rows: usize,
    pub written: BTreeMap<String, usize>,
    pub skipped: BTreeMap<String, usize>,
    pub from_file: usize,
}

impl VariantsSummary {
    pub fn render(&self, out: &Path) -> String {
        let new: usize = self.written.values().sum();
        let mut s = format!("wrote {}: {} rows, {} base questions, {} new variants\n", out.display(), self.rows, self.bases, new);
        for (strategy, n) in &self.written {
            s.push_str(&format!("  {n:>6}  {strategy}\n"));
        }
        if self.skipped.is_empty() {
            s.push_str("skipped: none\n");
        } else {
            s.push_str(&format!("skipped: {}\n", self.skipped.values().sum::<usize>()));
            for (reason, n) in &self.skipped {
                s.push_str(&format!("  {n:>6}  {reason}\n"));
            }
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VariantsError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// A new variant of a base row.
struct NewVariant {
    question: String,
    strategy: String,
    polarity: i8,
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Keeps `k` of `items` chosen by a generator seeded per study, in their original order.
fn choose<T>(items: Vec<T>, k: usize, seed: u64, study: &str) -> Vec<T> {
    if items.len() <= k {
        return items;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv(study));
    let mut idx: Vec<usize> = (0..items.len()).collect();
    for i in 0..k {
        let j = rng.random_range(i..idx.len());
        idx.swap(i, j);
    }
    let mut keep: Vec<usize> = idx[..k].to_vec();
    keep.sort_unstable();
    items.into_iter().enumerate().filter(|(i, _)| keep.binary_search(i).is_ok()).map(|(_, t)| t).collect()
}

/// Variants written elsewhere, validated against the bases: one JSON object per line (or a
/// JSON array) with `study_id`, `question`, optional `strategy` (default "external"),
/// `polarity` (1 or -1, default 1), `image_path` (must be the base's) and `base_question` (must
/// be the base's text).
fn read_external(path: &Path, bases: &HashMap<String, &StudyRow>) -> Result<HashMap<String, Vec<NewVariant>>, ImportError> {
    let mut out: HashMap<String, Vec<NewVariant>> = HashMap::new();
    for_each_record(path, |r| {
        r.object()?;
        let study = r.text("study_id")?;
        let base = bases.get(&study).ok_or_else(|| r.error("study_id", format!("{study:?} is not a study of the base CSV")))?;
        if let Some(image) = r.opt_text("image_path")?
            && image != base.image_path
        {
            return Err(r.error("image_path", format!("{image:?} is not the base question's image {:?}", base.image_path)));
        }
        if let Some(text) = r.opt_text("base_question")?
            && text.trim() != base.question.trim()
        {
            return Err(r.error("base_question", format!("{text:?} is not study {study}'s base question {:?}", base.question)));
        }
        let question = r.text("question")?;
        if !is_yes_no_question(&question) {
            return Err(r.error("question", format!("{question:?} is not a yes/no question")));
        }
        let polarity = match r.opt_text("polarity")?.as_deref().map(str::trim) {
            None | Some("1") | Some("+1") => 1,
            Some("-1") => -1,
            Some(other) => return Err(r.error("polarity", format!("must be 1 or -1, found {other}"))),
        };
        let strategy = r.opt_text("strategy")?.unwrap_or_else(|| "external".into());
        out.entry(study).or_default().push(NewVariant { question: question.trim().to_string(), strategy, polarity });
        Ok(Flow::Continue)
    })?;
    Ok(out)
}

/// The metadata columns in the order of the input's header.
fn metadata_columns(csv: &Path) -> Result<Vec<String>, ImportError> {
    let (_, headers) = crate::import::box_questions::open_csv(csv)?;
    let known = ["question_variant", "variant_id"];
    Ok(headers
        .iter()
        .map(|h| if h.trim().is_empty() { "csv_index".to_string() } else { h.trim().to_string() })
        .filter(|h| !STUDY_COLUMNS.contains(&h.as_str()) && !known.contains(&h.as_str()))
        .collect())
}

fn cells(row: &StudyRow, answer: Answer, extras: &[String]) -> Vec<String> {
    let roi = |f: fn(&radlens_shared::geometry::PixelBox) -> f64| row.roi.as_ref().map(|b| number(f(b))).unwrap_or_default();
    let mut c = vec![
        row.study_id.clone(),
        row.image_path.clone(),
        row.question.clone(),
        answer.as_str().to_string(),
        row.variant_index.to_string(),
        row.variant_name.clone().unwrap_or_default(),
        row.strategy.clone(),
        row.polarity.to_string(),
        row.finding.clone().unwrap_or_default(),
        row.subject_id.clone().unwrap_or_default(),
        roi(|b| b.x0),
        roi(|b| b.y0),
        roi(|b| b.width()),
        roi(|b| b.height()),
    ];
    c.extend(extras.iter().map(|k| row.metadata.get(k).cloned().unwrap_or_default()));
    c
}

pub fn run(opts: &VariantsOptions) -> Result<VariantsSummary, VariantsError> {
    let plan = read_plan(&opts.csv)?;
    if !plan.problems.is_empty() {
        return Err(PlanError::Problems { path: opts.csv.clone(), problems: plan.problems }.into());
    }
    let strategies = match (&opts.strategies, &opts.from) {
        (Some(s), _) => s.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => Strategy::ALL.to_vec(),
    };
    let studies = plan.studies();
    let bases: HashMap<String, &StudyRow> =
        studies.iter().filter_map(|(id, rows)| rows.iter().find(|r| r.variant_index == 0).map(|r| (id.clone(), *r))).collect();
    let mut external = match &opts.from {
        Some(path) => read_external(path, &bases)?,
        None => HashMap::new(),
    };
    let extras = metadata_columns(&opts.csv)?;
    let header: Vec<String> = STUDY_COLUMNS.iter().map(|s| s.to_string()).chain(extras.iter().cloned()).collect();
    let mut writer = CsvOut::create(&opts.out, &header)?;
    let mut summary = VariantsSummary::default();
    for (study, rows) in &studies {
        for row in rows {
            writer.write_record(&cells(row, row.answer.expect("a CSV without problems has answers"), &extras))?;
            summary.rows += 1;
        }
        let Some(base) = bases.get(study) else { continue };
        summary.bases += 1;
        let truth = base.answer.expect("a CSV without problems has answers");
        // A rule's output that the study already asks (an earlier run, a hand-written variant)
        // would count the same question twice.
        let key = |q: &str| q.trim().trim_end_matches('?').trim().to_lowercase();
        let existing: std::collections::HashSet<String> = rows.iter().map(|r| key(&r.question)).collect();
        let mut new: Vec<NewVariant> = Vec::new();
        for result in variants::generate(&base.question, &strategies, opts.seed) {
            match result {
                Ok(v) if existing.contains(&key(&v.question)) => {
                    *summary.skipped.entry(format!("{} ({})", variants::Skip::Duplicate.reason(), v.strategy.flag())).or_insert(0) += 1;
                }
                Ok(v) => new.push(NewVariant { question: v.question, strategy: v.strategy.name().to_string(), polarity: v.polarity }),
                Err((s, skip)) => *summary.skipped.entry(format!("{} ({})", skip.reason(), s.flag())).or_insert(0) += 1,
            }
        }
        if let Some(k) = opts.per_question {
            let before = new.len();
            new = choose(new, k, opts.seed, study);
            if before > new.len() {
                *summary.skipped.entry(format!("over --per-question {k}")).or_insert(0) += before - new.len();
            }
        }
        let from_file = external.remove(study).unwrap_or_default();
        summary.from_file += from_file.len();
        new.extend(from_file);
        let mut index = rows.iter().map(|r| r.variant_index).max().unwrap_or(0);
        for v in new {
            index += 1;
            let mut row = (*base).clone();
            row.question = v.question;
            row.variant_index = index;
            row.variant_name = Some(format!("{}-{index}", v.strategy.replace(' ', "-")));
            row.polarity = v.polarity;
            row.strategy = v.strategy.clone();
            writer.write_record(&cells(&row, truth.with_polarity(v.polarity), &extras))?;
            summary.rows += 1;
            *summary.written.entry(v.strategy).or_insert(0) += 1;
        }
    }
    writer.finish()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::test_support::{Scratch, plan};

    const BASE: &str = "study_id,image_path,question,answer,finding,roi_x,roi_y,roi_w,roi_h,source_id\n\
        a,a.png,Is there a pleural effusion in this chest X-ray?,yes,effusion,10,20,30,40,A1\n\
        b,b.png,Is there cardiomegaly?,no,cardiomegaly,,,,,B1\n\
        c,c.png,Heart size normal?,no,,,,,,C1\n";

    fn opts(s: &Scratch, from: Option<PathBuf>) -> VariantsOptions {
        VariantsOptions { csv: s.write("base.csv", BASE), out: s.out(), strategies: None, per_question: None, seed: 0, from }
    }

    #[test]
    fn every_rule_writes_variants_with_their_truth_and_keeps_the_base_columns() {
        let s = Scratch::new("variants");
        let summary = run(&opts(&s, None)).unwrap();
        let plan = plan(&s.out());
        let a: Vec<&StudyRow> = plan.rows.iter().filter(|r| r.study_id == "a").collect();
        assert_eq!(a.len(), 6, "the base and one variant per rule");
        assert_eq!(a.iter().map(|r| r.variant_index).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
        for r in &a {
            let truth = if r.polarity == -1 { Answer::No } else { Answer::Yes };
            assert_eq!(r.answer, Some(truth), "{}", r.question);
            assert_eq!(
                (r.finding.as_deref(), r.roi, r.metadata.get("source_id").map(String::as_str)),
                (Some("effusion"), a[0].roi, Some("A1"))
            );
            assert!(is_yes_no_question(&r.question), "{}", r.question);
        }
        assert_eq!(a[5].strategy, "negation");
        // b has no location clause to move; c is not in a form the structural rules know.
        assert_eq!(summary.skipped.get("no location clause to move (reorder)"), Some(&1));
        assert_eq!(summary.skipped.get("question form not recognised (negation)"), Some(&1));
        assert_eq!(summary.bases, 3);
        assert_eq!(run(&opts(&s, None)).unwrap(), summary, "the same seed, the same file");
    }

    #[test]
    fn a_second_run_adds_nothing_the_study_already_asks() {
        let s = Scratch::new("variants-twice");
        let first = run(&opts(&s, None)).unwrap();
        let again = VariantsOptions { csv: s.out(), out: s.0.join("again.csv"), ..opts(&s, None) };
        let second = run(&again).unwrap();
        assert_eq!(second.written.values().sum::<usize>(), 0, "{second:?}");
        assert_eq!(second.rows, first.rows);
        let dup = second.skipped.iter().filter(|(k, _)| k.starts_with(variants::Skip::Duplicate.reason())).map(|(_, n)| n).sum::<usize>();
        assert_eq!(dup, first.written.values().sum::<usize>());
    }

    #[test]
    fn per_question_keeps_k_variants_chosen_by_the_seed() {
        let s = Scratch::new("variants-k");
        let mut o = opts(&s, None);
        o.per_question = Some(2);
        o.strategies = Some(vec![Strategy::Hedge, Strategy::Register, Strategy::Negation]);
        run(&o).unwrap();
        let plan = plan(&s.out());
        assert_eq!(plan.rows.iter().filter(|r| r.study_id == "a").count(), 3);
    }

    #[test]
    fn variants_from_a_file_are_validated_against_their_base() {
        let s = Scratch::new("variants-from");
        let good = s.write(
            "v.jsonl",
            "{\"study_id\": \"b\", \"question\": \"Is the heart enlarged?\", \"strategy\": \"llm\", \"image_path\": \"b.png\"}\n{\"study_id\": \"b\", \"question\": \"Is the heart size normal?\", \"polarity\": -1}\n",
        );
        let summary = run(&opts(&s, Some(good))).unwrap();
        let plan = plan(&s.out());
        let b: Vec<_> = plan.rows.iter().filter(|r| r.study_id == "b").map(|r| (r.strategy.as_str(), r.polarity, r.answer)).collect();
        assert_eq!(b, vec![("baseline", 1, Some(Answer::No)), ("llm", 1, Some(Answer::No)), ("external", -1, Some(Answer::Yes))]);
        assert_eq!(summary.from_file, 2);
        for (line, needle) in [
            (
                "{\"study_id\": \"b\", \"question\": \"Is the heart enlarged?\", \"image_path\": \"a.png\"}",
                "at line 1: .image_path: \"a.png\" is not the base question's image",
            ),
            ("{\"study_id\": \"zz\", \"question\": \"Is the heart enlarged?\"}", "at line 1: .study_id: \"zz\" is not a study"),
            ("{\"study_id\": \"b\", \"question\": \"Is it big?\", \"base_question\": \"Is there a mass?\"}", "at line 1: .base_question"),
            ("{\"study_id\": \"b\", \"question\": \"Describe the heart.\"}", "is not a yes/no question"),
        ] {
            let bad = s.write("bad.jsonl", &format!("{line}\n"));
            let err = run(&opts(&s, Some(bad))).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn a_base_csv_with_problems_is_refused() {
        let s = Scratch::new("variants-bad");
        let mut o = opts(&s, None);
        o.csv = s.write("bad.csv", "study_id,image_path,question,answer\na,a.png,Is there a mass?,maybe\n");
        let err = run(&o).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("maybe"), "{err}");
        assert!(!s.out().exists());
    }
}
