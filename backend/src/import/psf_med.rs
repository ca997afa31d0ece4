//! PSF-Med (Sadanandan and Behzadan, arXiv:2602.21428, 2026; Hugging Face `saillab/psf-med`,
//! code at github.com/UNHSAILLab/psf-med). Its per-record schema is not published in a form we
//! could read (the dataset is gated), so this importer reads the layout below and the README says
//! so: one record per base question, as JSON Lines (a `datasets` export) or a JSON array:
//!
//! ```text
//! {"question_id": "...", "dataset": "mimic|padchest|vindr", "image_path": "...", "subject_id"?: "...",
//!  "question": "...", "answer": "yes|no", "is_yesno"?: bool, "split"?: "test",
//!  "paraphrases": [{"paraphrase": "...", "phenomenon": "lexical_substitution", "polarity"?: 1|-1,
//!                   "is_yesno"?: bool}, ...]}
//! ```
//!
//! The base question is variant 0; each paraphrase a variant whose `strategy` is its phenomenon
//! (lexical_substitution, syntactic_restructuring, negation_pattern, ...). PSF-Med's judge kept
//! only meaning-preserving paraphrases, so polarity is 1 unless the record says -1.

use serde_json::Value;

use super::json::{Flow, Record, for_each_record};
use super::writer::{OutRow, StudyWriter};
use super::{ImportError, ImportOptions, Summary, images::ImageIndex};

const EXTRAS: [&str; 2] = ["source_question_id", "source_dataset"];

struct Paraphrase {
    text: String,
    phenomenon: String,
    polarity: i8,
    yes_no_flag: Option<bool>,
}

fn paraphrases(r: &Record<'_>) -> Result<Vec<Paraphrase>, ImportError> {
    let items = match r.get("paraphrases") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(r.error("paraphrases", format!("expected a list, found {}", super::json::kind(other)))),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let key = format!("paraphrases[{i}]");
            match item {
                Value::String(text) => {
                    Ok(Paraphrase { text: text.clone(), phenomenon: "paraphrase".into(), polarity: 1, yes_no_flag: None })
                }
                Value::Object(m) => {
                    let text = m.get("paraphrase").or_else(|| m.get("text")).and_then(Value::as_str);
                    let text = text.ok_or_else(|| r.error(&format!("{key}.paraphrase"), "missing (or not a string)"))?;
                    let polarity = match m.get("polarity") {
                        None | Some(Value::Null) => 1,
                        Some(v) if v.as_i64() == Some(1) => 1,
                        Some(v) if v.as_i64() == Some(-1) => -1,
                        Some(v) => return Err(r.error(&format!("{key}.polarity"), format!("must be 1 or -1, found {v}"))),
                    };
                    Ok(Paraphrase {
                        text: text.to_string(),
                        phenomenon: m.get("phenomenon").and_then(Value::as_str).unwrap_or("paraphrase").to_string(),
                        polarity,
                        yes_no_flag: m.get("is_yesno").and_then(Value::as_bool),
                    })
                }
                other => Err(r.error(&key, format!("expected a string or an object, found {}", super::json::kind(other)))),
            }
        })
        .collect()
}

pub fn import(opts: &ImportOptions, out: &std::path::Path) -> Result<Summary, ImportError> {
    let mut images = ImageIndex::new(&opts.images)?;
    let mut summary = Summary::default();
    let mut writer = StudyWriter::create(out, &EXTRAS)?;
    for_each_record(&opts.src, |r| {
        r.object()?;
        let qid = r.text("question_id")?;
        let question = r.text("question")?;
        let answer = r.text("answer")?;
        let image = match r.opt_text("image_path")? {
            Some(p) => p,
            None => r.text("image")?,
        };
        let paraphrases = paraphrases(&r)?;
        if opts.split.as_deref().is_some_and(|s| r.opt_text("split").ok().flatten().as_deref() != Some(s)) {
            summary.drop(super::OTHER_SPLIT);
            return Ok(Flow::Continue);
        }
        if r.get("is_yesno").and_then(Value::as_bool) == Some(false) {
            summary.drop("marked not yes/no by the source (is_yesno false)");
            return Ok(Flow::Continue);
        }
        let answer = match super::closed_question(&question, &answer) {
            Ok(a) => a,
            Err(reason) => {
                summary.drop(reason);
                return Ok(Flow::Continue);
            }
        };
        if images.size(&image).is_none() {
            summary.drop(super::IMAGE_MISSING);
            return Ok(Flow::Continue);
        }
        if super::at_limit(opts, summary.studies) {
            return Ok(Flow::Stop);
        }
        let study_id = format!("psf-med-{qid}");
        let extras = vec![("source_question_id", qid.clone()), ("source_dataset", r.opt_text("dataset")?.unwrap_or_default())];
        let mut base = OutRow::base(study_id, image, question.trim().to_string(), answer);
        base.subject_id = r.opt_text("subject_id")?;
        base.extras = extras;
        writer.write(&base)?;
        summary.rows += 1;
        let mut index = 0;
        for p in paraphrases {
            if p.yes_no_flag == Some(false) || !radlens_shared::answer::is_yes_no_question(&p.text) {
                summary.drop("paraphrase not a yes/no question");
                continue;
            }
            index += 1;
            let mut row = base.clone();
            row.question = p.text.trim().to_string();
            row.answer = answer.with_polarity(p.polarity);
            row.variant_index = index;
            row.question_variant = format!("psf-med-{index}");
            row.strategy = p.phenomenon;
            row.polarity = p.polarity;
            writer.write(&row)?;
            summary.rows += 1;
        }
        summary.studies += 1;
        Ok(Flow::Continue)
    })?;
    writer.finish()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::test_support::{Scratch, fixture, opts, plan};
    use radlens_shared::answer::Answer;

    #[test]
    fn base_questions_and_paraphrases_become_variants_with_their_phenomenon() {
        let s = Scratch::new("psf-med");
        s.image("p10/p10000032/s50414267/a.jpg", 64, 64);
        s.image("padchest/b.png", 64, 64);
        let summary = import(&opts(&fixture("psf-med/psf-med.jsonl"), &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        let got: Vec<_> =
            plan.rows.iter().map(|r| (r.study_id.as_str(), r.variant_index, r.strategy.as_str(), r.polarity, r.answer)).collect();
        assert_eq!(
            got,
            vec![
                ("psf-med-mimic_0001", 0, "baseline", 1, Some(Answer::Yes)),
                ("psf-med-mimic_0001", 1, "lexical_substitution", 1, Some(Answer::Yes)),
                ("psf-med-mimic_0001", 2, "syntactic_restructuring", 1, Some(Answer::Yes)),
                ("psf-med-mimic_0001", 3, "negation_pattern", -1, Some(Answer::No)),
                ("psf-med-padchest_0002", 0, "baseline", 1, Some(Answer::No)),
            ]
        );
        assert_eq!(plan.rows[1].question, "Is there evidence of pleural fluid?");
        assert_eq!(plan.rows[0].subject_id.as_deref(), Some("10000032"));
        assert_eq!(plan.rows[4].metadata.get("source_dataset").map(String::as_str), Some("padchest"));
        let dropped: Vec<(&str, usize)> = summary.dropped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            dropped,
            vec![
                (crate::import::IMAGE_MISSING, 1),
                ("marked not yes/no by the source (is_yesno false)", 1),
                ("paraphrase not a yes/no question", 2),
            ]
        );
    }

    #[test]
    fn a_bad_polarity_is_refused_with_its_line_and_path() {
        let s = Scratch::new("psf-med-bad");
        s.image("a.png", 8, 8);
        let src = s.write(
            "bad.jsonl",
            "{\"question_id\": \"q\", \"image_path\": \"a.png\", \"question\": \"Is there edema?\", \"answer\": \"no\", \"paraphrases\": [{\"paraphrase\": \"Any edema?\", \"polarity\": 0}]}\n",
        );
        let err = import(&opts(&src, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("at line 1: .paraphrases[0].polarity: must be 1 or -1"), "{err}");
    }
}
