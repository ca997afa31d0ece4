//! VQA-RAD (Lau et al., Scientific Data 2018; OSF release `VQA_RAD Dataset Public.json`): a JSON
//! array of questions with `qid, phrase_type, qid_linked_id, image_name, image_organ, question,
//! question_type, answer, answer_type (CLOSED/OPEN), ...`.
//!
//! A study is one `qid_linked_id` on one image: the free-form question is the base
//! (`phrase_type` freeform / test_freeform) and its paraphrase (`para` / `test_para`) a variant
//! with strategy "paraphrase". Kept: closed yes/no questions on chest images; `--split test`
//! keeps the `test_*` phrase types, `--split train` the others.

use std::collections::HashMap;

use super::json::{Flow, for_each_record};
use super::writer::{OutRow, StudyWriter};
use super::{ImportError, ImportOptions, Summary, images::ImageIndex};

const EXTRAS: [&str; 5] = ["source_qid", "qid_linked_id", "phrase_type", "image_organ", "question_type"];

struct Question {
    qid: String,
    linked: String,
    phrase_type: String,
    row: OutRow,
}

pub fn import(opts: &ImportOptions, out: &std::path::Path) -> Result<Summary, ImportError> {
    if let Some(split) = opts.split.as_deref().filter(|s| !["train", "test"].contains(s)) {
        return Err(ImportError::Usage(format!("--split {split}: VQA-RAD's splits are train and test (from phrase_type)")));
    }
    let mut images = ImageIndex::new(&opts.images)?;
    let mut summary = Summary::default();
    // Studies in first-appearance order: (qid_linked_id, image) -> its questions.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut studies: HashMap<(String, String), Vec<Question>> = HashMap::new();
    for_each_record(&opts.src, |r| {
        r.object()?;
        let qid = r.text("qid")?;
        let image = r.text("image_name")?;
        let question = r.text("question")?;
        let answer = r.text("answer")?;
        let answer_type = r.text("answer_type")?;
        let phrase_type = r.opt_text("phrase_type")?.unwrap_or_else(|| "freeform".into());
        let organ = r.opt_text("image_organ")?.unwrap_or_default();
        let linked = r.opt_text("qid_linked_id")?.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| qid.clone());
        let split = if phrase_type.starts_with("test") { "test" } else { "train" };
        if opts.split.as_deref().is_some_and(|s| s != split) {
            summary.drop(super::OTHER_SPLIT);
            return Ok(Flow::Continue);
        }
        if !answer_type.trim().eq_ignore_ascii_case("closed") {
            summary.drop("open question (answer_type OPEN)");
            return Ok(Flow::Continue);
        }
        if !organ.trim().eq_ignore_ascii_case("chest") {
            summary.drop("not a chest image (image_organ HEAD or ABD)");
            return Ok(Flow::Continue);
        }
        let answer = match super::studiable(&question, &answer, &image, &mut images) {
            Ok(a) => a,
            Err(reason) => {
                summary.drop(reason);
                return Ok(Flow::Continue);
            }
        };
        let key = (linked.clone(), image.clone());
        if !studies.contains_key(&key) {
            if super::at_limit(opts, order.len()) {
                return Ok(Flow::Stop);
            }
            order.push(key.clone());
        }
        let mut row = OutRow::base(String::new(), image, question.trim().to_string(), answer);
        row.extras = vec![
            ("source_qid", qid.clone()),
            ("qid_linked_id", linked.clone()),
            ("phrase_type", phrase_type.clone()),
            ("image_organ", organ),
            ("question_type", r.opt_text("question_type")?.unwrap_or_default()),
        ];
        studies.entry(key).or_default().push(Question { qid, linked, phrase_type, row });
        Ok(Flow::Continue)
    })?;
    let mut writer = StudyWriter::create(out, &EXTRAS)?;
    for key in &order {
        let mut questions = studies.remove(key).unwrap_or_default();
        // The free-form question first (the base), then its paraphrases in file order.
        questions.sort_by_key(|q| q.phrase_type.contains("para"));
        let linked_short: String = questions[0].linked.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        let study_id = format!("vqa-rad-{linked_short}");
        for (i, q) in questions.into_iter().enumerate() {
            let mut row = q.row;
            row.study_id = study_id.clone();
            row.variant_index = i as u32;
            if i > 0 {
                row.question_variant = format!("vqa-rad-{}", q.qid);
                row.strategy = "paraphrase".into();
            }
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

    fn scratch() -> Scratch {
        let s = Scratch::new("vqa-rad");
        for name in ["synpic100.jpg", "synpic200.jpg", "synpic300.jpg"] {
            s.image(name, 64, 64);
        }
        s
    }

    #[test]
    fn closed_chest_questions_become_studies_with_their_paraphrases() {
        let s = scratch();
        let summary = import(&opts(&fixture("vqa-rad/VQA_RAD Dataset Public.json"), &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        let rows: Vec<_> =
            plan.rows.iter().map(|r| (r.study_id.as_str(), r.variant_index, r.question.as_str(), r.answer, r.strategy.as_str())).collect();
        assert_eq!(
            rows,
            vec![
                ("vqa-rad-L1", 0, "Is there a pleural effusion?", Some(Answer::Yes), "baseline"),
                ("vqa-rad-L1", 1, "Is fluid present in the pleural space?", Some(Answer::Yes), "paraphrase"),
                ("vqa-rad-L4", 0, "Is the heart enlarged?", Some(Answer::No), "baseline"),
            ]
        );
        let first = &plan.rows[0];
        assert_eq!(first.image_path, "synpic100.jpg");
        for (k, v) in
            [("source_qid", "1"), ("qid_linked_id", "L1"), ("phrase_type", "freeform"), ("image_organ", "CHEST"), ("question_type", "PRES")]
        {
            assert_eq!(first.metadata.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(plan.rows[1].variant_name.as_deref(), Some("vqa-rad-2"));
        assert_eq!((summary.studies, summary.rows), (2, 3));
        let dropped: Vec<(&str, usize)> = summary.dropped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            dropped,
            vec![
                (crate::import::ANSWER_NOT_YES_NO, 1),
                (crate::import::IMAGE_MISSING, 1),
                ("not a chest image (image_organ HEAD or ABD)", 1),
                (crate::import::NOT_YES_NO_QUESTION, 1),
                ("open question (answer_type OPEN)", 1),
            ]
        );
    }

    #[test]
    fn split_test_keeps_the_test_phrase_types() {
        let s = scratch();
        let mut o = opts(&fixture("vqa-rad/VQA_RAD Dataset Public.json"), &s.images());
        o.split = Some("test".into());
        let summary = import(&o, &s.out()).unwrap();
        assert_eq!(summary.studies, 1);
        assert_eq!(plan(&s.out()).rows[0].study_id, "vqa-rad-L4");
    }

    #[test]
    fn a_record_without_its_answer_type_is_refused_and_the_old_file_stays() {
        let s = scratch();
        let src = s.write(
            "bad.json",
            "[{\"qid\": 1, \"image_name\": \"synpic100.jpg\", \"question\": \"Is there a mass?\", \"answer\": \"yes\"}]",
        );
        std::fs::write(s.out(), "the previous file\n").unwrap();
        let err = import(&opts(&src, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("bad.json: at [0].answer_type: missing"), "{err}");
        // The refused import left the previous file as it was, and no temporary file.
        assert_eq!(std::fs::read_to_string(s.out()).unwrap(), "the previous file\n");
        assert!(!s.0.join("questions.csv.tmp").exists());
    }
}
