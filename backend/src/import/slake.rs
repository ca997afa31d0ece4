//! SLAKE (Liu et al., ISBI 2021; `Slake1.0/train.json`, `validate.json`, `test.json`): a JSON
//! array of questions with `img_id, img_name, question, answer, q_lang (en/zh), answer_type
//! (OPEN/CLOSED), content_type, modality (X-Ray/CT/MRI), location, base_type, qid, triple`.
//!
//! Kept: English (`q_lang` en), CLOSED, X-ray questions with a yes/no answer; one study per
//! question (SLAKE has no paraphrases). `img_name` ("xmlab102/source.jpg") is the image path.

use super::json::{Flow, for_each_record};
use super::writer::{OutRow, StudyWriter};
use super::{ImportError, ImportOptions, Summary, images::ImageIndex};

const EXTRAS: [&str; 5] = ["source_qid", "img_id", "content_type", "location", "base_type"];

pub fn import(opts: &ImportOptions, out: &std::path::Path) -> Result<Summary, ImportError> {
    let mut images = ImageIndex::new(&opts.images)?;
    let mut summary = Summary::default();
    let mut writer = StudyWriter::create(out, &EXTRAS)?;
    for_each_record(&opts.src, |r| {
        r.object()?;
        let qid = r.text("qid")?;
        let image = r.text("img_name")?;
        let question = r.text("question")?;
        let answer = r.text("answer")?;
        let answer_type = r.text("answer_type")?;
        let lang = r.text("q_lang")?;
        let modality = r.opt_text("modality")?.unwrap_or_default();
        if !lang.trim().eq_ignore_ascii_case("en") {
            summary.drop("not English (q_lang zh)");
            return Ok(Flow::Continue);
        }
        if !answer_type.trim().eq_ignore_ascii_case("closed") {
            summary.drop("open question (answer_type OPEN)");
            return Ok(Flow::Continue);
        }
        if !modality.trim().eq_ignore_ascii_case("x-ray") {
            summary.drop("not an X-ray (modality CT or MRI)");
            return Ok(Flow::Continue);
        }
        let answer = match super::studiable(&question, &answer, &image, &mut images) {
            Ok(a) => a,
            Err(reason) => {
                summary.drop(reason);
                return Ok(Flow::Continue);
            }
        };
        if super::at_limit(opts, summary.studies) {
            return Ok(Flow::Stop);
        }
        let mut row = OutRow::base(format!("slake-{qid}"), image, question.trim().to_string(), answer);
        row.extras = vec![
            ("source_qid", qid),
            ("img_id", r.opt_text("img_id")?.unwrap_or_default()),
            ("content_type", r.opt_text("content_type")?.unwrap_or_default()),
            ("location", r.opt_text("location")?.unwrap_or_default()),
            ("base_type", r.opt_text("base_type")?.unwrap_or_default()),
        ];
        writer.write(&row)?;
        summary.rows += 1;
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
    fn english_closed_x_ray_questions_are_kept_with_their_ids() {
        let s = Scratch::new("slake");
        s.image("xmlab102/source.jpg", 64, 64);
        let summary = import(&opts(&fixture("slake/test.json"), &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        let got: Vec<_> = plan.rows.iter().map(|r| (r.study_id.as_str(), r.image_path.as_str(), r.question.as_str(), r.answer)).collect();
        assert_eq!(
            got,
            vec![
                ("slake-11934", "xmlab102/source.jpg", "Does the picture contain lung?", Some(Answer::Yes)),
                ("slake-11940", "xmlab102/source.jpg", "Is the lung healthy?", Some(Answer::No)),
            ]
        );
        let m = &plan.rows[1].metadata;
        for (k, v) in
            [("source_qid", "11940"), ("img_id", "102"), ("content_type", "Abnormality"), ("location", "Lung"), ("base_type", "vqa")]
        {
            assert_eq!(m.get(k).map(String::as_str), Some(v), "{k}");
        }
        let dropped: Vec<(&str, usize)> = summary.dropped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            dropped,
            vec![
                (crate::import::IMAGE_MISSING, 1),
                ("not English (q_lang zh)", 1),
                (crate::import::NOT_YES_NO_QUESTION, 1),
                ("not an X-ray (modality CT or MRI)", 1),
                ("open question (answer_type OPEN)", 1),
            ]
        );
    }

    #[test]
    fn limit_stops_after_n_studies() {
        let s = Scratch::new("slake-limit");
        s.image("xmlab102/source.jpg", 64, 64);
        let mut o = opts(&fixture("slake/test.json"), &s.images());
        o.limit = Some(1);
        assert_eq!(import(&o, &s.out()).unwrap().studies, 1);
        assert_eq!(plan(&s.out()).rows.len(), 1);
    }

    #[test]
    fn split_is_refused_because_slake_splits_by_file() {
        let s = Scratch::new("slake-split");
        let mut o = opts(&fixture("slake/test.json"), &s.images());
        o.split = Some("test".into());
        let err = crate::import::run(crate::import::Format::Slake, &o, &s.out()).unwrap_err().to_string();
        assert!(err.contains("no split field"), "{err}");
    }
}
