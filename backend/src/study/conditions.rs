//! Image conditions (grounding spec G6) for the study runner: which image a row is shown under
//! each condition, with which truth, or why it has none (no swap partner, no box, no control
//! box). The pixel math is `radlens_shared::grounding` (`fill_box`, `contrast90`) and
//! `case::null_edit` (`jpeg90`); this decides what each row gets.

use std::collections::BTreeMap;

use image::DynamicImage;
use radlens_shared::answer::Answer;
use radlens_shared::geometry::{MapGeometry, PixelBox};
use radlens_shared::grounding::{ImageCondition, NullEdit, control_boxes, fill_box};
use radlens_shared::record::Pass;

use super::plan::StudyRow;
use crate::case::null_edit::{edit_8bit, edit_image};
use crate::models::processor::ImageRole;

/// A study's swap partners (G6): the first study after it in CSV order, cyclically, with the same
/// finding, another subject when subject ids are given, and the opposite or the same truth (the
/// base question's answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapPartners {
    /// The partner's study id, or why there is none.
    pub opposite: Result<String, String>,
    pub same: Result<String, String>,
    /// `prior_swap`'s: the first study after it, cyclically, with a prior image of its own
    /// (another file), another subject when subject ids are given, the same finding where one
    /// is, else any finding.
    pub prior: Result<PriorPartner, String>,
}

/// The study whose prior stands in for a row's prior under `prior_swap`, and that prior.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorPartner {
    pub study: String,
    pub image: String,
}

/// What decides a study's partners.
struct StudyKey<'a> {
    id: &'a str,
    subject: Option<&'a str>,
    finding: Option<&'a str>,
    truth: Option<Answer>,
    image: &'a str,
    prior: Option<&'a str>,
}

/// Every study's partners, over all the CSV's studies in file order (`studies` as
/// `StudyPlan::studies` gives them, before any shard or `--n-studies` cut).
pub fn swap_partners(studies: &[(String, Vec<&StudyRow>)]) -> BTreeMap<String, SwapPartners> {
    let keys: Vec<StudyKey<'_>> = studies
        .iter()
        .filter_map(|(id, rows)| {
            let base = rows.iter().find(|r| r.variant_index == 0 && r.problem.is_none())?;
            Some(StudyKey {
                id,
                subject: base.subject_id.as_deref(),
                finding: base.finding.as_deref(),
                truth: base.answer.filter(|a| *a != Answer::Unknown),
                image: &base.image_path,
                prior: base.extra_images.iter().find(|e| e.role == ImageRole::Prior).map(|e| e.path.as_str()),
            })
        })
        .collect();
    let mut out = BTreeMap::new();
    for (i, me) in keys.iter().enumerate() {
        let find = |want: Answer| -> Result<String, String> {
            let finding = me.finding.ok_or("the study names no finding to match")?;
            (1..keys.len())
                .map(|k| &keys[(i + k) % keys.len()])
                .find(|other| {
                    other.finding == Some(finding)
                        && other.truth == Some(want)
                        && other.image != me.image
                        && (me.subject.is_none() || other.subject != me.subject)
                })
                .map(|other| other.id.to_string())
                .ok_or_else(|| {
                    let subject = if me.subject.is_some() { ", another subject" } else { "" };
                    format!("no other study with finding {finding:?}{subject} and truth {}", want.as_str())
                })
        };
        let prior = prior_partner(&keys, i);
        let partners = match me.truth {
            Some(t) => SwapPartners { opposite: find(t.invert()), same: find(t), prior },
            None => {
                let why = Err("the base question has no yes/no truth".to_string());
                SwapPartners { opposite: why.clone(), same: why, prior }
            }
        };
        out.insert(me.id.to_string(), partners);
    }
    // Studies whose base row cannot be run have no partner either.
    for (id, _) in studies {
        out.entry(id.clone()).or_insert_with(|| {
            let why = "the study has no runnable base question".to_string();
            SwapPartners { opposite: Err(why.clone()), same: Err(why.clone()), prior: Err(why) }
        });
    }
    out
}

/// `keys[i]`'s prior partner (see [`SwapPartners::prior`]), or why it has none.
fn prior_partner(keys: &[StudyKey<'_>], i: usize) -> Result<PriorPartner, String> {
    let me = &keys[i];
    let own = me.prior.ok_or("the study has no prior image (prior_image_path)")?;
    let others: Vec<(&StudyKey<'_>, &str)> = (1..keys.len())
        .map(|k| &keys[(i + k) % keys.len()])
        .filter_map(|o| Some((o, o.prior?)))
        .filter(|(o, prior)| *prior != own && (me.subject.is_none() || o.subject != me.subject))
        .collect();
    let same_finding = others.iter().find(|(o, _)| me.finding.is_some() && o.finding == me.finding);
    let (o, prior) = same_finding.or(others.first()).ok_or_else(|| {
        let subject = if me.subject.is_some() { " of another subject" } else { "" };
        "no other study".to_string() + subject + " has a prior image of its own"
    })?;
    Ok(PriorPartner { study: o.id.to_string(), image: prior.to_string() })
}

/// What a row is shown under a condition pass.
#[derive(Debug, Clone)]
pub struct ConditionImage {
    /// The image file (relative to the image folder) the shown image is made from.
    pub source: String,
    pub truth: Option<Answer>,
    pub partner_study: Option<String>,
    pub occluded_box: Option<PixelBox>,
}

/// Where `row` gets its image under `pass` (a condition other than the real and the blank
/// image), or why it has none. `partners` are the row's study's, `partner_images` each study's
/// base image; `geometry` is where the model's map lies on the row's own image (for the control
/// box and the box check).
pub fn condition_image(
    row: &StudyRow,
    pass: Pass,
    partners: Option<&SwapPartners>,
    partner_images: &BTreeMap<String, String>,
    geometry: Option<&MapGeometry>,
) -> Result<ConditionImage, String> {
    let own = |truth: Option<Answer>| ConditionImage { source: row.image_path.clone(), truth, partner_study: None, occluded_box: None };
    let inside = |b: PixelBox, what: &str| -> Result<PixelBox, String> {
        if let Some(g) = geometry
            && !b.inside_image(g.image_w, g.image_h)
        {
            return Err(format!(
                "the {what} ({}, {}, {}, {}; CSV line {}) is not inside the {}x{} image",
                b.x0,
                b.y0,
                b.width(),
                b.height(),
                row.csv_line,
                g.image_w,
                g.image_h
            ));
        }
        Ok(b)
    };
    let boxed = || inside(row.roi.ok_or("the row has no radiologist box (roi_x, roi_y, roi_w, roi_h)")?, "radiologist box");
    match pass {
        Pass::Image | Pass::BlankImage => Err(format!("{} is not an image condition of its own", pass.name())),
        Pass::Jpeg90 | Pass::Contrast90 => Ok(own(row.answer)),
        // Rows with a prior run on the multi-image path; this is every other row.
        Pass::PriorBlank | Pass::PriorSwap => Err("the row has no prior image (prior_image_path)".into()),
        Pass::RoiOccluded => Ok(ConditionImage { occluded_box: Some(boxed()?), ..own(row.answer) }),
        Pass::ConfoundOccluded => {
            let b = inside(
                row.confound.ok_or("the row has no confound box (confound_x, confound_y, confound_w, confound_h)")?,
                "confound box",
            )?;
            Ok(ConditionImage { occluded_box: Some(b), ..own(row.answer) })
        }
        Pass::ControlOccluded => {
            let b = boxed()?;
            let g = geometry.ok_or("the row's image could not be preprocessed")?;
            let first = control_boxes(g, &b).map_err(|e| e.to_string())?.into_iter().next();
            let control = first.ok_or("the crop has no control box of the box's size that misses the box")?;
            Ok(ConditionImage { occluded_box: Some(control), ..own(row.answer) })
        }
        Pass::SwapOpposite | Pass::SwapSame => {
            let p = partners.ok_or("the study has no swap partners")?;
            let (partner, truth) = match pass {
                Pass::SwapOpposite => (&p.opposite, row.answer.filter(|a| *a != Answer::Unknown).map(Answer::invert)),
                _ => (&p.same, row.answer),
            };
            let id = partner.clone()?;
            let source = partner_images.get(&id).cloned().ok_or_else(|| format!("swap partner {id} has no image"))?;
            Ok(ConditionImage { source, truth, partner_study: Some(id), occluded_box: None })
        }
    }
}

/// The image shown: `original` (the decoded source) edited as the condition says.
pub fn shown_image(original: &DynamicImage, pass: Pass, shown: &ConditionImage) -> Result<DynamicImage, String> {
    match pass {
        Pass::Jpeg90 => edit_image(original, NullEdit::Jpeg90),
        Pass::Contrast90 => edit_image(original, NullEdit::Contrast90),
        Pass::RoiOccluded | Pass::ControlOccluded | Pass::ConfoundOccluded => {
            let b = shown.occluded_box.ok_or("no box to occlude")?;
            occlude(original, &b)
        }
        _ => Ok(original.clone()),
    }
}

/// The blank image of the `blank` condition (metrics.md's text-only pass): black; its size does
/// not matter, it is resized to the model's input like any other.
pub fn blank_image() -> DynamicImage {
    DynamicImage::new_luma8(512, 512)
}

/// `original` with `b` filled by its per-channel mean (`roi_occluded`, `control_occluded`,
/// `confound_occluded`), in
/// its own pixel format where it has one of the 8-bit ones (else as 8-bit RGB).
pub fn occlude(original: &DynamicImage, b: &PixelBox) -> Result<DynamicImage, String> {
    edit_8bit(original, |pixels, w, h, channels| fill_box(pixels, w, h, channels, b).map_err(|e| e.to_string()))
}

/// The conditions as passes, the text-only pass (`blank`) included when asked for either way.
pub fn condition_passes(text_only_pass: bool, conditions: &[ImageCondition]) -> Vec<Pass> {
    let mut out = vec![Pass::Image];
    for c in ImageCondition::ALL {
        let asked = conditions.contains(&c) || (c == ImageCondition::Blank && text_only_pass);
        if c != ImageCondition::Real && asked {
            out.push(Pass::of(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::study::plan::read_plan;

    fn plan_of(name: &str, csv: &str) -> crate::study::plan::StudyPlan {
        let dir: PathBuf = std::env::temp_dir().join(format!("radlens-conditions-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("study.csv");
        std::fs::write(&p, csv).unwrap();
        read_plan(&p).unwrap()
    }

    fn partners(csv: &str, name: &str) -> BTreeMap<String, SwapPartners> {
        let plan = plan_of(name, csv);
        swap_partners(&plan.studies())
    }

    #[test]
    fn the_partner_is_the_next_study_with_the_same_finding_and_the_wanted_truth_cyclically() {
        let csv = "study_id,image_path,question,answer,finding\n\
                   a,a.png,Is there an effusion?,yes,effusion\n\
                   b,b.png,Is there an effusion?,no,effusion\n\
                   c,c.png,Is there a nodule?,no,nodule\n\
                   d,d.png,Is there an effusion?,yes,effusion\n\
                   e,e.png,Is there an effusion?,no,effusion\n";
        let p = partners(csv, "cyclic");
        assert_eq!((p["a"].opposite.as_deref(), p["a"].same.as_deref()), (Ok("b"), Ok("d")));
        assert_eq!((p["d"].opposite.as_deref(), p["d"].same.as_deref()), (Ok("e"), Ok("a")), "wraps around to the start");
        assert_eq!((p["e"].opposite.as_deref(), p["e"].same.as_deref()), (Ok("a"), Ok("b")));
        assert!(p["c"].opposite.as_ref().unwrap_err().contains("nodule"), "no other nodule study: {:?}", p["c"]);
        assert!(p["c"].same.is_err());
    }

    #[test]
    fn with_subject_ids_the_partner_is_another_subject() {
        let csv = "study_id,image_path,question,answer,finding,subject_id\n\
                   a,a.png,Is there an effusion?,yes,effusion,p1\n\
                   b,b.png,Is there an effusion?,no,effusion,p1\n\
                   c,c.png,Is there an effusion?,no,effusion,p2\n\
                   d,d.png,Is there an effusion?,yes,effusion,p1\n";
        let p = partners(csv, "subjects");
        assert_eq!(p["a"].opposite.as_deref(), Ok("c"), "b is the same subject");
        assert!(p["a"].same.as_ref().unwrap_err().contains("another subject"), "d is the same subject: {:?}", p["a"].same);
        assert_eq!(p["c"].opposite.as_deref(), Ok("d"));
    }

    #[test]
    fn the_prior_partner_is_the_next_study_with_a_prior_of_its_own_the_same_finding_first() {
        let csv = "study_id,image_path,prior_image_path,question,answer,finding,subject_id\n\
                   a,a.png,pa.png,Has the effusion grown?,yes,effusion,p1\n\
                   b,b.png,,Has the effusion grown?,no,effusion,p2\n\
                   c,c.png,pc.png,Has the nodule grown?,no,nodule,p3\n\
                   d,d.png,pd.png,Has the effusion grown?,no,effusion,p4\n\
                   e,e.png,pa.png,Has the effusion grown?,no,effusion,p1\n";
        let p = partners(csv, "prior");
        let prior = |id: &str| p[id].prior.clone().map(|x| (x.study, x.image));
        assert_eq!(prior("a"), Ok(("d".into(), "pd.png".into())), "b has no prior; d has the same finding, c does not");
        assert_eq!(prior("c"), Ok(("d".into(), "pd.png".into())), "no other nodule study: the next with a prior");
        assert_eq!(prior("d"), Ok(("e".into(), "pa.png".into())));
        assert_eq!(prior("e"), Ok(("d".into(), "pd.png".into())), "a is the same subject and the same file");
        assert!(prior("b").unwrap_err().contains("no prior image"));
    }

    fn row(roi: Option<PixelBox>, answer: Answer) -> StudyRow {
        StudyRow {
            csv_line: 2,
            study_id: "a".into(),
            subject_id: None,
            image_path: "a.png".into(),
            extra_images: Vec::new(),
            question: "Is there an effusion?".into(),
            answer: Some(answer),
            variant_index: 1,
            variant_name: None,
            strategy: "negation".into(),
            polarity: -1,
            finding: Some("effusion".into()),
            roi,
            confound: None,
            metadata: BTreeMap::new(),
            problem: None,
        }
    }

    #[test]
    fn each_condition_names_its_image_and_truth_or_says_why_not() {
        let geometry = MapGeometry { h: 4, w: 4, crop: PixelBox::image(100, 100).unwrap(), image_w: 100, image_h: 100 };
        let partners = SwapPartners { opposite: Ok("b".into()), same: Err("no other study".into()), prior: Err("none".into()) };
        let images: BTreeMap<String, String> = [("b".to_string(), "b.png".to_string())].into();
        let boxed = row(Some(PixelBox::from_xywh(10.0, 10.0, 20.0, 20.0).unwrap()), Answer::No);
        let shown = |r: &StudyRow, pass| condition_image(r, pass, Some(&partners), &images, Some(&geometry));
        // swap_opposite: the partner's image, the truth inverted (the partner's truth, asked as this row asks).
        let s = shown(&boxed, Pass::SwapOpposite).unwrap();
        assert_eq!((s.source.as_str(), s.truth, s.partner_study.as_deref()), ("b.png", Some(Answer::Yes), Some("b")));
        assert_eq!(shown(&boxed, Pass::SwapSame).unwrap_err(), "no other study");
        let r = shown(&boxed, Pass::RoiOccluded).unwrap();
        assert_eq!((r.source.as_str(), r.truth, r.occluded_box), ("a.png", Some(Answer::No), boxed.roi));
        let c = shown(&boxed, Pass::ControlOccluded).unwrap();
        let control = c.occluded_box.unwrap();
        assert_eq!((control.width(), control.height()), (20.0, 20.0));
        assert_eq!(control, control_boxes(&geometry, &boxed.roi.unwrap()).unwrap()[0], "the first G2 control box");
        let bare = row(None, Answer::No);
        assert!(shown(&bare, Pass::RoiOccluded).unwrap_err().contains("no radiologist box"));
        assert!(shown(&bare, Pass::ControlOccluded).unwrap_err().contains("no radiologist box"));
        let off = row(Some(PixelBox::from_xywh(90.0, 90.0, 20.0, 20.0).unwrap()), Answer::No);
        assert!(shown(&off, Pass::RoiOccluded).unwrap_err().contains("not inside the 100x100 image"));
        assert_eq!(shown(&bare, Pass::Jpeg90).unwrap().truth, Some(Answer::No));
        // confound_occluded: the row's confound box, the row's own truth; none, or off the image,
        // is a reason not to run.
        assert!(shown(&boxed, Pass::ConfoundOccluded).unwrap_err().contains("no confound box"));
        let tagged = StudyRow { confound: Some(PixelBox::from_xywh(80.0, 2.0, 10.0, 10.0).unwrap()), ..boxed.clone() };
        let t = shown(&tagged, Pass::ConfoundOccluded).unwrap();
        assert_eq!((t.source.as_str(), t.truth, t.occluded_box), ("a.png", Some(Answer::No), tagged.confound));
        let off = StudyRow { confound: Some(PixelBox::from_xywh(95.0, 2.0, 10.0, 10.0).unwrap()), ..boxed.clone() };
        let why = shown(&off, Pass::ConfoundOccluded).unwrap_err();
        assert!(why.contains("the confound box (95, 2, 10, 10; CSV line 2) is not inside the 100x100 image"), "{why}");
    }

    #[test]
    fn an_occluded_box_holds_the_mean_and_the_rest_is_the_original() {
        use image::GrayImage;
        let pixels: Vec<u8> = (0..100u32).map(|i| (i * 2) as u8).collect();
        let img = DynamicImage::ImageLuma8(GrayImage::from_raw(10, 10, pixels.clone()).unwrap());
        let b = PixelBox::from_xywh(2.0, 3.0, 4.0, 2.0).unwrap();
        let shown = ConditionImage { source: "x".into(), truth: None, partner_study: None, occluded_box: Some(b) };
        let out = shown_image(&img, Pass::RoiOccluded, &shown).unwrap().to_luma8();
        let mean = (pixels.iter().map(|&v| f64::from(v)).sum::<f64>() / 100.0).round_ties_even() as u8;
        for y in 0..10u32 {
            for x in 0..10u32 {
                let inside = (2..6).contains(&x) && (3..5).contains(&y);
                let want = if inside { mean } else { pixels[(y * 10 + x) as usize] };
                assert_eq!(out.get_pixel(x, y).0[0], want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn blank_joins_the_conditions_in_the_specs_order() {
        use ImageCondition::*;
        assert_eq!(condition_passes(false, &[]), vec![Pass::Image]);
        assert_eq!(condition_passes(true, &[Jpeg90, SwapSame]), vec![Pass::Image, Pass::BlankImage, Pass::SwapSame, Pass::Jpeg90]);
        assert_eq!(condition_passes(false, &[Blank]), vec![Pass::Image, Pass::BlankImage]);
    }
}
