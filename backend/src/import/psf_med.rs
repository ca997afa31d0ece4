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
//! The same records flattened to one (question, paraphrase) pair each are read too:
//! `question_id, image_path, original_question, answer, paraphrase, phenomenon, polarity?,
//! paraphrase_is_yesno?` (records of one `question_id` are gathered, wherever they are).
//!
//! The base question is variant 0; each paraphrase a variant whose `strategy` is its phenomenon
//! (lexical_substitution, syntactic_restructuring, negation_pattern, ...). PSF-Med's judge kept
//! only meaning-preserving paraphrases, so polarity is 1 unless the record says -1.

use std::collections::HashMap;

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

/// One base question with every paraphrase seen for it so far.
struct Entry {
    qid: String,
    question: String,
    answer: String,
    image: String,
    subject: Option<String>,
    dataset: String,
    split: Option<String>,
    yes_no_flag: Option<bool>,
    paraphrases: Vec<Paraphrase>,
}

fn polarity(r: &Record<'_>, key: &str) -> Result<i8, ImportError> {
    match r.get(key) {
        None => Ok(1),
        Some(v) if v.as_i64() == Some(1) => Ok(1),
        Some(v) if v.as_i64() == Some(-1) => Ok(-1),
        Some(v) => Err(r.error(key, format!("must be 1 or -1, found {v}"))),
    }
}

/// A record in either layout: nested (`question` + `paraphrases`) or one pair per record
/// (`original_question` + `paraphrase` + `phenomenon`, as in PSF-Med's flip-bank files).
fn entry(r: &Record<'_>) -> Result<Entry, ImportError> {
    r.object()?;
    let question = match r.opt_text("question")? {
        Some(q) => q,
        None => r.text("original_question")?,
    };
    let mut paraphrases = paraphrases(r)?;
    if let Some(text) = r.opt_text("paraphrase")? {
        paraphrases.push(Paraphrase {
            text,
            phenomenon: r.opt_text("phenomenon")?.unwrap_or_else(|| "paraphrase".into()),
            polarity: polarity(r, "polarity")?,
            yes_no_flag: r.get("paraphrase_is_yesno").and_then(Value::as_bool),
        });
    }
    Ok(Entry {
        qid: r.text("question_id")?,
        answer: r.text("answer")?,
        image: match r.opt_text("image_path")? {
            Some(p) => p,
            None => r.text("image")?,
        },
        subject: r.opt_text("subject_id")?,
        dataset: r.opt_text("dataset")?.unwrap_or_default(),
        split: r.opt_text("split")?,
        yes_no_flag: r.get("is_yesno").and_then(Value::as_bool),
        question,
        paraphrases,
    })
}

pub fn import(opts: &ImportOptions, out: &std::path::Path) -> Result<Summary, ImportError> {
    let mut images = ImageIndex::new(&opts.images)?;
    let mut summary = Summary::default();
    // Grouped by question_id in first-appearance order: the pair layout spreads one base
    // question over several records.
    let mut entries: Vec<Entry> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for_each_record(&opts.src, |r| {
        let e = entry(&r)?;
        match by_id.get(&e.qid) {
            Some(&i) => {
                let first = &mut entries[i];
                if first.question.trim() != e.question.trim() || first.image != e.image {
                    return Err(r.error("question_id", format!("{:?} was seen before with another question or image", e.qid)));
                }
                first.paraphrases.extend(e.paraphrases);
            }
            None => {
                by_id.insert(e.qid.clone(), entries.len());
                entries.push(e);
            }
        }
        Ok(Flow::Continue)
    })?;
    let mut writer = StudyWriter::create(out, &EXTRAS)?;
    for e in entries {
        if opts.split.as_deref().is_some_and(|s| e.split.as_deref() != Some(s)) {
            summary.drop(super::OTHER_SPLIT);
            continue;
        }
        if e.yes_no_flag == Some(false) {
            summary.drop("marked not yes/no by the source (is_yesno false)");
            continue;
        }
        let answer = match super::studiable(&e.question, &e.answer, &e.image, &mut images) {
            Ok(a) => a,
            Err(reason) => {
                summary.drop(reason);
                continue;
            }
        };
        if super::at_limit(opts, summary.studies) {
            break;
        }
        let mut base = OutRow::base(format!("psf-med-{}", e.qid), e.image, e.question.trim().to_string(), answer);
        base.subject_id = e.subject;
        base.extras = vec![("source_question_id", e.qid), ("source_dataset", e.dataset)];
        writer.write(&base)?;
        summary.rows += 1;
        let mut index = 0;
        for p in e.paraphrases {
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
    }
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
    fn the_pair_layout_gathers_one_question_from_several_records() {
        let s = Scratch::new("psf-med-pairs");
        s.image("a.png", 8, 8);
        let pair = |para: &str, phen: &str| {
            format!(
                "{{\"question_id\": \"q1\", \"image_path\": \"a.png\", \"original_question\": \"Is there edema?\", \"answer\": \"no\", \"paraphrase\": \"{para}\", \"phenomenon\": \"{phen}\"}}\n"
            )
        };
        let src = s.write(
            "pairs.jsonl",
            &(pair("Is edema present?", "syntactic_restructuring") + &pair("Is there oedema?", "lexical_substitution")),
        );
        let summary = import(&opts(&src, &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        let got: Vec<_> = plan.rows.iter().map(|r| (r.variant_index, r.question.as_str(), r.strategy.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (0, "Is there edema?", "baseline"),
                (1, "Is edema present?", "syntactic_restructuring"),
                (2, "Is there oedema?", "lexical_substitution")
            ]
        );
        assert_eq!(summary.studies, 1);
        let clash = s.write("clash.jsonl", &(pair("Is edema present?", "x") + &pair("Is edema present?", "x").replace("a.png", "b.png")));
        let err = import(&opts(&clash, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("at line 2: .question_id: \"q1\" was seen before with another question or image"), "{err}");
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
