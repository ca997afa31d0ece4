//! MIMIC-CXR-VQA (Bae et al., NeurIPS 2023 Datasets and Benchmarks; PhysioNet
//! `mimic-ext-mimic-cxr-vqa`, `dataset/train.json`, `valid.json`, `test.json`): a JSON array
//! with `split, idx, image_id, question, content_type, semantic_type (verify/choose/query),
//! template, template_program, template_arguments, answer (a list), subject_id, study_id,
//! image_path`.
//!
//! Kept: `verify` questions whose answer list is exactly one "yes" or "no" (choose and query
//! questions are not answered by yes or no). The finding is the template's first `attribute`
//! argument when there is one. `image_path` ("p10/p10000032/s5.../x.jpg") is looked up under
//! `--images` (MIMIC-CXR-JPG's `files/` folder), else `<image_id>.jpg/.png`.

use super::json::{Flow, Record, for_each_record};
use super::writer::{OutRow, StudyWriter};
use super::{ImportError, ImportOptions, Summary, images::ImageIndex};

const EXTRAS: [&str; 6] = ["source_split", "source_idx", "image_id", "source_study_id", "content_type", "template"];

/// The answer list of a verify question: one yes or no, else `None`.
fn single_answer(r: &Record<'_>) -> Result<Option<radlens_shared::answer::Answer>, ImportError> {
    match r.get("answer") {
        Some(serde_json::Value::Array(items)) => match items.as_slice() {
            [serde_json::Value::String(s)] => Ok(super::yes_no_answer(s)),
            _ => Ok(None),
        },
        Some(serde_json::Value::String(s)) => Ok(super::yes_no_answer(s)),
        Some(other) => Err(r.error("answer", format!("expected a list of strings, found {}", super::json::kind(other)))),
        None => Err(r.error("answer", "missing")),
    }
}

/// `template_arguments.attribute` of the template's first slot ("pleural effusion"), if any.
fn finding(r: &Record<'_>) -> Option<String> {
    let attr = r.get("template_arguments")?.get("attribute")?;
    let first = match attr {
        serde_json::Value::Object(m) => m.get("0").or_else(|| m.values().next()),
        serde_json::Value::Array(a) => a.first(),
        _ => None,
    }?;
    first.as_str().map(str::to_string).filter(|s| !s.trim().is_empty())
}

pub fn import(opts: &ImportOptions, out: &std::path::Path) -> Result<Summary, ImportError> {
    let mut images = ImageIndex::new(&opts.images)?;
    let mut summary = Summary::default();
    let mut writer = StudyWriter::create(out, &EXTRAS)?;
    for_each_record(&opts.src, |r| {
        r.object()?;
        let idx = r.text("idx")?;
        let question = r.text("question")?;
        let semantic = r.text("semantic_type")?;
        let split = r.opt_text("split")?.unwrap_or_default();
        let image_id = r.text("image_id")?;
        if opts.split.as_deref().is_some_and(|s| s != split) {
            summary.drop(super::OTHER_SPLIT);
            return Ok(Flow::Continue);
        }
        if semantic.trim() != "verify" {
            summary.drop("not a verify question (semantic_type choose or query)");
            return Ok(Flow::Continue);
        }
        let Some(answer) = single_answer(&r)? else {
            summary.drop("answer list is not a single yes or no");
            return Ok(Flow::Continue);
        };
        if !radlens_shared::answer::is_yes_no_question(&question) {
            summary.drop(super::NOT_YES_NO_QUESTION);
            return Ok(Flow::Continue);
        }
        let mut candidates: Vec<String> = r.opt_text("image_path")?.into_iter().collect();
        candidates.extend(["png", "jpg"].iter().map(|ext| format!("{image_id}.{ext}")));
        let Some(image) = images.find(&candidates) else {
            summary.drop(super::IMAGE_MISSING);
            return Ok(Flow::Continue);
        };
        if super::at_limit(opts, summary.studies) {
            return Ok(Flow::Stop);
        }
        let study = if split.is_empty() { format!("mimic-cxr-vqa-{idx}") } else { format!("mimic-cxr-vqa-{split}-{idx}") };
        let mut row = OutRow::base(study, image, question.trim().to_string(), answer);
        row.subject_id = r.opt_text("subject_id")?;
        row.finding = finding(&r);
        row.extras = vec![
            ("source_split", split),
            ("source_idx", idx),
            ("image_id", image_id),
            ("source_study_id", r.opt_text("study_id")?.unwrap_or_default()),
            ("content_type", r.opt_text("content_type")?.unwrap_or_default()),
            ("template", r.opt_text("template")?.unwrap_or_default()),
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

    fn scratch() -> Scratch {
        let s = Scratch::new("mimic-vqa");
        s.image("p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg", 64, 64);
        s.image("img-b.png", 64, 64);
        s
    }

    #[test]
    fn verify_questions_keep_subject_finding_and_source_ids() {
        let s = scratch();
        let summary = import(&opts(&fixture("mimic-cxr-vqa/test.json"), &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        assert_eq!(plan.rows.len(), 2);
        let r = &plan.rows[0];
        assert_eq!(r.study_id, "mimic-cxr-vqa-test-0");
        assert_eq!(r.image_path, "p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg");
        assert_eq!(
            (r.answer, r.subject_id.as_deref(), r.finding.as_deref()),
            (Some(Answer::Yes), Some("10000032"), Some("pleural effusion"))
        );
        for (k, v) in [("source_split", "test"), ("source_idx", "0"), ("source_study_id", "50414267"), ("content_type", "presence")] {
            assert_eq!(r.metadata.get(k).map(String::as_str), Some(v), "{k}");
        }
        // The second image is found by its image_id, as exported to PNG.
        assert_eq!((plan.rows[1].image_path.as_str(), plan.rows[1].answer), ("img-b.png", Some(Answer::No)));
        let dropped: Vec<(&str, usize)> = summary.dropped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            dropped,
            vec![
                ("answer list is not a single yes or no", 1),
                (crate::import::IMAGE_MISSING, 1),
                ("not a verify question (semantic_type choose or query)", 2),
            ]
        );
    }

    #[test]
    fn an_answer_that_is_not_a_list_is_refused_with_its_path() {
        let s = scratch();
        let src = s.write(
            "bad.json",
            "[{\"split\": \"test\", \"idx\": 0, \"image_id\": \"img-b\", \"question\": \"Is there edema?\", \"semantic_type\": \"verify\", \"answer\": {\"a\": 1}}]",
        );
        let err = import(&opts(&src, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("at [0].answer: expected a list of strings, found an object"), "{err}");
    }
}
