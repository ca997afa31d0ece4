//! The one record filter: the server filters with it and the dashboard filters with it, so a
//! view means the same rows on both sides. It round-trips through a URL query string, which is
//! where the dashboard keeps its state.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::grounding::controls::BEATS_CONTROLS_PERCENTILE;
use crate::record::{CaseRecord, Pass};

/// An inclusive range on a map metric; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Range {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Range {
    fn contains(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    fn is_open(&self) -> bool {
        self.min.is_none() && self.max.is_none()
    }
}

/// Which records a view shows. Empty fields do not filter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RecordFilter {
    pub model: Option<String>,
    pub strategy: Option<String>,
    pub finding: Option<String>,
    pub pass: Option<Pass>,
    pub parsed: Option<Answer>,
    /// `Some(true)`: correct only; `Some(false)`: wrong only (errors never match either).
    pub correct: Option<bool>,
    /// `Some(true)`: error records only; `Some(false)`: no error records.
    pub error: Option<bool>,
    /// Case-insensitive substring of the question, answer, study or sample id.
    pub text: Option<String>,
    pub focus: Range,
    pub gini: Range,
    pub image_share: Range,
    /// Grounding G2 (`beats_controls=`): `Some(true)`, records whose own map beats the control
    /// boxes ([`beats_controls`] is `Some(true)`); `Some(false)`, those whose map does not.
    /// Records without box controls match neither.
    #[serde(default)]
    pub beats_controls: Option<bool>,
    /// Grounding G6 (`blank_same=`): `Some(true)`, image-pass records whose blank-image record
    /// (same sample and model) gave the same parsed answer ([`same_answer_on_blank`] is
    /// `Some(true)`); `Some(false)`, those whose blank answer differs. Records of other passes,
    /// and image-pass records without a blank answer to compare, match neither.
    #[serde(default)]
    pub blank_same: Option<bool>,
    /// Grounding G7 (`near_tie=`): `Some(true)`, image-pass records whose yes/no margin is a near
    /// tie ([`near_tie`] is `Some(true)`: `|m| < eps`, the run's threshold); `Some(false)`, those
    /// with a margin at least `eps` away from zero. Records without a margin, and records of
    /// other passes, match neither.
    #[serde(default)]
    pub near_tie: Option<bool>,
}

/// What a filter needs to know about the run beyond the record itself: the near-tie threshold
/// (the manifest's `near_tie_eps`, `RunManifest::near_tie_eps`) and each (sample, model)'s
/// blank-image answer. Built once per run from all its records, so a record matches the same
/// way in every view.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    near_tie_eps: f64,
    /// `(sample_id, model)` -> the blank-image record's parsed answer (`None`: it has none, e.g.
    /// an error record).
    blank: HashMap<(String, String), Option<Answer>>,
}

impl RunFacts {
    /// The facts of a run's `records` under the near-tie threshold `near_tie_eps`.
    pub fn of<R: AsRef<CaseRecord>>(records: &[R], near_tie_eps: f64) -> Self {
        let blank = records
            .iter()
            .map(AsRef::as_ref)
            .filter(|r| r.pass == Pass::BlankImage)
            .map(|r| ((r.sample_id.clone(), r.model.clone()), r.parsed_answer))
            .collect();
        Self { near_tie_eps, blank }
    }

    /// The near-tie threshold on `|m|`.
    pub fn near_tie_eps(&self) -> f64 {
        self.near_tie_eps
    }

    /// The parsed answer of `r`'s blank-image record: `None` without a blank record,
    /// `Some(None)` when it has no parsed answer.
    pub fn blank_answer(&self, r: &CaseRecord) -> Option<Option<Answer>> {
        self.blank.get(&(r.sample_id.clone(), r.model.clone())).copied()
    }
}

/// Whether an image-pass record's yes/no margin is a near tie (grounding G7): `|m| < eps`.
/// `None` for records of other passes and records without a margin.
pub fn near_tie(r: &CaseRecord, eps: f64) -> Option<bool> {
    if r.pass != Pass::Image {
        return None;
    }
    r.yes_no_margin.map(|m| m.abs() < eps)
}

/// Whether an image-pass record's parsed answer equals its blank-image record's (grounding G6,
/// `unknown` a value of its own): the model would have said the same without looking. `None`
/// for records of other passes, image-pass records without a blank record, and when either
/// record has no parsed answer (an error).
pub fn same_answer_on_blank(r: &CaseRecord, facts: &RunFacts) -> Option<bool> {
    if r.pass != Pass::Image {
        return None;
    }
    let own = r.parsed_answer?;
    let blank = facts.blank_answer(r)??;
    Some(own == blank)
}

/// Whether a record's own map (the method of `record.map`) puts more mass on the radiologist's
/// box than at least [`BEATS_CONTROLS_PERCENTILE`] of the same-size control boxes (grounding
/// G2's `roi_percentile >= 0.95`, the share the run analysis reports as "beating controls").
/// `None` when the record has no map, no box controls for that map, or no percentile (no
/// control box, or the box's mask is empty): such a record neither beats nor fails to beat.
pub fn beats_controls(r: &CaseRecord) -> Option<bool> {
    let own = r.map.as_ref()?.provenance.method;
    let percentile = r.grounding.as_ref()?.of(own)?.box_controls.as_ref()?.roi_percentile?;
    Some(percentile >= BEATS_CONTROLS_PERCENTILE)
}

impl RecordFilter {
    /// Whether `r`, a record of the run `facts` describes, is in the view.
    pub fn matches(&self, r: &CaseRecord, facts: &RunFacts) -> bool {
        let eq = |want: &Option<String>, got: Option<&str>| want.as_deref().is_none_or(|w| got.is_some_and(|g| g.eq_ignore_ascii_case(w)));
        if !eq(&self.model, Some(&r.model)) || !eq(&self.strategy, Some(&r.strategy)) || !eq(&self.finding, r.finding.as_deref()) {
            return false;
        }
        if self.pass.is_some_and(|p| p != r.pass) || self.parsed.is_some_and(|p| Some(p) != r.parsed_answer) {
            return false;
        }
        if self.correct.is_some_and(|c| r.correct != Some(c)) || self.error.is_some_and(|e| e != r.error.is_some()) {
            return false;
        }
        if let Some(t) = self.text.as_deref().map(str::to_lowercase).filter(|t| !t.is_empty()) {
            let hay = [Some(r.question.as_str()), r.answer_text.as_deref(), Some(r.study_id.as_str()), Some(r.sample_id.as_str())];
            if !hay.iter().flatten().any(|h| h.to_lowercase().contains(&t)) {
                return false;
            }
        }
        if self.beats_controls.is_some_and(|want| beats_controls(r) != Some(want)) {
            return false;
        }
        if self.blank_same.is_some_and(|want| same_answer_on_blank(r, facts) != Some(want)) {
            return false;
        }
        if self.near_tie.is_some_and(|want| near_tie(r, facts.near_tie_eps) != Some(want)) {
            return false;
        }
        // A metric range only admits records that have a map.
        let ranges = [
            (&self.focus, r.map.as_ref().map(|m| m.metrics.focus)),
            (&self.gini, r.map.as_ref().map(|m| m.metrics.gini)),
            (&self.image_share, r.map.as_ref().map(|m| m.image_share)),
        ];
        ranges.iter().all(|(range, v)| range.is_open() || v.is_some_and(|v| range.contains(v)))
    }

    /// `key=value` pairs (unescaped) of the set fields, in a fixed order.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k.to_string(), v));
            }
        };
        push("model", self.model.clone());
        push("strategy", self.strategy.clone());
        push("finding", self.finding.clone());
        push("pass", self.pass.map(|p| p.name().into()));
        push("parsed", self.parsed.map(|a| a.as_str().into()));
        push("correct", self.correct.map(|c| c.to_string()));
        push("error", self.error.map(|c| c.to_string()));
        push("q", self.text.clone());
        push("beats_controls", self.beats_controls.map(|b| b.to_string()));
        push("blank_same", self.blank_same.map(|b| b.to_string()));
        push("near_tie", self.near_tie.map(|b| b.to_string()));
        for (name, r) in [("focus", &self.focus), ("gini", &self.gini), ("image_share", &self.image_share)] {
            push(&format!("{name}_min"), r.min.map(|v| v.to_string()));
            push(&format!("{name}_max"), r.max.map(|v| v.to_string()));
        }
        out
    }

    /// Reads the pairs [`to_pairs`](Self::to_pairs) writes; unknown keys are ignored (they belong
    /// to other parts of a view), a malformed value is an error naming the key.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut f = Self::default();
        for (k, v) in pairs {
            let num = || v.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("{k}: {v:?} is not a number"));
            let flag = || v.parse::<bool>().map_err(|_| format!("{k}: {v:?} is not true or false"));
            match k {
                "model" => f.model = Some(v.into()),
                "strategy" => f.strategy = Some(v.into()),
                "finding" => f.finding = Some(v.into()),
                "pass" => {
                    f.pass = Some(Pass::from_name(v).ok_or_else(|| {
                        let names: Vec<&str> = Pass::ALL.iter().map(|p| p.name()).collect();
                        format!("pass: {v:?} is not one of {}", names.join(", "))
                    })?)
                }
                "parsed" => {
                    f.parsed = Some(match v {
                        "yes" => Answer::Yes,
                        "no" => Answer::No,
                        "unknown" => Answer::Unknown,
                        _ => return Err(format!("parsed: {v:?} is not yes, no or unknown")),
                    })
                }
                "correct" => f.correct = Some(flag()?),
                "error" => f.error = Some(flag()?),
                "q" => f.text = Some(v.into()),
                "beats_controls" => f.beats_controls = Some(flag()?),
                "blank_same" => f.blank_same = Some(flag()?),
                "near_tie" => f.near_tie = Some(flag()?),
                "focus_min" => f.focus.min = Some(num()?),
                "focus_max" => f.focus.max = Some(num()?),
                "gini_min" => f.gini.min = Some(num()?),
                "gini_max" => f.gini.max = Some(num()?),
                "image_share_min" => f.image_share.min = Some(num()?),
                "image_share_max" => f.image_share.max = Some(num()?),
                _ => {}
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_through_pairs() {
        let f = RecordFilter {
            model: Some("llava".into()),
            pass: Some(Pass::BlankImage),
            correct: Some(false),
            text: Some("effusion".into()),
            focus: Range { min: Some(0.2), max: None },
            beats_controls: Some(false),
            blank_same: Some(true),
            near_tie: Some(false),
            ..Default::default()
        };
        let pairs = f.to_pairs();
        let back = RecordFilter::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, f);
        assert!(RecordFilter::from_pairs([("focus_min", "x")]).unwrap_err().contains("focus_min"));
        assert_eq!(RecordFilter::from_pairs([("view", "grid")]).unwrap(), RecordFilter::default());
    }

    /// The facts of a run of one record, under the spec's default near-tie threshold.
    fn alone(r: &CaseRecord) -> RunFacts {
        RunFacts::of(std::slice::from_ref(r), crate::grounding::DEFAULT_NEAR_TIE_EPS)
    }

    /// A record of `model` whose own attention map has the given G2 `roi_percentile` (`None`:
    /// no box controls at all; `Some(None)`: box controls without a percentile).
    fn boxed(model: &str, percentile: Option<Option<f64>>) -> CaseRecord {
        let map = serde_json::json!({
            "provenance": {
                "model": model, "method": "query_to_visual", "layer_range": "last-quarter", "layers": [1], "head_fusion": "mean",
                "query_mode": "query", "query_positions": [9],
                "geometry": {"h": 2, "w": 2, "crop": {"x0": 0.0, "y0": 0.0, "x1": 4.0, "y1": 4.0}, "image_w": 4, "image_h": 4}
            },
            "image_share": 0.5, "metrics": {"entropy_nats": 1.0, "focus": 0.2, "gini": 0.3, "top10_mass": 0.4}, "roi": null,
            "values": {"file": "a.bin", "offset": 0, "shape": [2, 2]}, "head_rows": {"file": "a.bin", "offset": 16, "shape": [1, 1, 1, 4]}
        });
        let mut r = serde_json::json!({
            "schema_version": 1, "sample_id": "s#0", "study_id": "s", "csv_line": 2, "variant_index": 0, "strategy": "baseline",
            "polarity": 1, "finding": null, "model": model, "pass": "image", "image": "x.png", "question": "q?",
            "ground_truth": "yes", "parsed_answer": "yes", "correct": true,
            "latency": { "preprocess_ms": 0.0, "image_encode_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "capture_ms": 0.0, "total_ms": 0.0 },
        });
        let controls = |p: Option<f64>| {
            serde_json::json!({
                "mass": 0.5, "mirror_box": {"x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0}, "mirror_mass": 0.1, "n_controls": 3,
                "control_mass_mean": 0.2, "roi_lift": 0.3, "roi_percentile": p, "control_pointing_mean": 0.0, "pointing_game": 1.0
            })
        };
        if let Some(p) = percentile {
            // The own map's entry, and a Grad-CAM entry that always beats its controls: only the
            // record's own map decides.
            r["grounding"] = serde_json::json!({"maps": [
                {"method": "gradcam", "box_controls": controls(Some(1.0))},
                {"method": "query_to_visual", "box_controls": controls(p)},
            ]});
        }
        r["map"] = map;
        serde_json::from_value(r).expect("a record")
    }

    #[test]
    fn a_map_beats_its_controls_at_the_95th_percentile_of_its_own_box_controls() {
        let yes = RecordFilter { beats_controls: Some(true), ..Default::default() };
        let no = RecordFilter { beats_controls: Some(false), ..Default::default() };
        // At and above the 95th percentile: beats; below: does not.
        for (p, verdict) in [(0.95, true), (1.0, true), (0.9499, false), (0.0, false)] {
            let r = boxed("m", Some(Some(p)));
            assert_eq!(beats_controls(&r), Some(verdict), "roi_percentile {p}");
            let facts = alone(&r);
            assert_eq!((yes.matches(&r, &facts), no.matches(&r, &facts)), (verdict, !verdict), "roi_percentile {p}");
            assert!(RecordFilter::default().matches(&r, &facts));
        }
        // Without box controls (no box, no grounding) or without a percentile (no control box
        // fits): neither yes nor no, and "any" keeps it.
        for r in [boxed("m", None), boxed("m", Some(None))] {
            assert_eq!(beats_controls(&r), None);
            let facts = alone(&r);
            assert!(!yes.matches(&r, &facts) && !no.matches(&r, &facts) && RecordFilter::default().matches(&r, &facts));
        }
        // Another method's box controls do not stand in for the own map's.
        let mut r = boxed("m", Some(Some(1.0)));
        r.grounding.as_mut().unwrap().maps.retain(|m| m.method == crate::fusion::MapMethod::Gradcam);
        assert_eq!(beats_controls(&r), None);
        // A record without a map has nothing to beat.
        r.map = None;
        assert_eq!(beats_controls(&r), None);
    }

    #[test]
    fn beats_controls_reads_from_the_query_and_refuses_a_bad_value() {
        assert_eq!(RecordFilter::from_pairs([("beats_controls", "true")]).unwrap().beats_controls, Some(true));
        assert_eq!(RecordFilter::from_pairs([("beats_controls", "false")]).unwrap().beats_controls, Some(false));
        assert!(RecordFilter::from_pairs([("beats_controls", "yes")]).unwrap_err().contains("beats_controls"));
        let f = RecordFilter { beats_controls: Some(true), ..Default::default() };
        assert_eq!(f.to_pairs(), vec![("beats_controls".to_owned(), "true".to_owned())]);
    }

    /// A record of `sample` and `model` on `pass` with the given parsed answer and margin.
    fn answered(sample: &str, model: &str, pass: Pass, parsed: Option<Answer>, margin: Option<f64>) -> CaseRecord {
        let mut r = boxed(model, None);
        r.sample_id = sample.to_owned();
        r.pass = pass;
        r.parsed_answer = parsed;
        r.yes_no_margin = margin;
        r
    }

    #[test]
    fn a_near_tie_is_an_image_pass_margin_closer_to_zero_than_eps() {
        let yes = RecordFilter { near_tie: Some(true), ..Default::default() };
        let no = RecordFilter { near_tie: Some(false), ..Default::default() };
        let eps = 0.5;
        // Strictly below eps in absolute value, on either side of zero: a near tie; at eps and
        // beyond: not.
        for (m, verdict) in [(0.0, true), (0.49, true), (-0.49, true), (0.5, false), (-0.5, false), (3.0, false), (-7.0, false)] {
            let r = answered("s#0", "m", Pass::Image, Some(Answer::Yes), Some(m));
            let facts = RunFacts::of(std::slice::from_ref(&r), eps);
            assert_eq!(near_tie(&r, eps), Some(verdict), "margin {m}");
            assert_eq!((yes.matches(&r, &facts), no.matches(&r, &facts)), (verdict, !verdict), "margin {m}");
        }
        // The threshold is the run's: the same margin under a wider eps is a near tie.
        let r = answered("s#0", "m", Pass::Image, Some(Answer::Yes), Some(0.7));
        assert!(!yes.matches(&r, &RunFacts::of(std::slice::from_ref(&r), 0.5)));
        assert!(yes.matches(&r, &RunFacts::of(std::slice::from_ref(&r), 1.0)));
        // No margin, or another pass's record: neither yes nor no, and "any" keeps it.
        for r in [
            answered("s#0", "m", Pass::Image, Some(Answer::Yes), None),
            answered("s#0", "m", Pass::BlankImage, Some(Answer::Yes), Some(0.1)),
            answered("s#0", "m", Pass::SwapOpposite, Some(Answer::Yes), Some(0.1)),
        ] {
            let facts = alone(&r);
            assert_eq!(near_tie(&r, 1.0), None, "{:?}", r.pass);
            assert!(!yes.matches(&r, &facts) && !no.matches(&r, &facts) && RecordFilter::default().matches(&r, &facts));
        }
    }

    #[test]
    fn same_answer_on_blank_compares_an_image_answer_with_its_own_blank_record() {
        use Answer::{No, Unknown, Yes};
        let yes = RecordFilter { blank_same: Some(true), ..Default::default() };
        let no = RecordFilter { blank_same: Some(false), ..Default::default() };
        let run = vec![
            answered("s#0", "a", Pass::Image, Some(Yes), Some(2.0)),      // 0: blank says yes too
            answered("s#0", "a", Pass::BlankImage, Some(Yes), Some(1.0)), // 1
            answered("s#0", "b", Pass::Image, Some(No), Some(-2.0)),      // 2: b's blank says yes
            answered("s#0", "b", Pass::BlankImage, Some(Yes), Some(1.0)), // 3
            answered("s#1", "a", Pass::Image, Some(Unknown), None),       // 4: unknown both ways: same
            answered("s#1", "a", Pass::BlankImage, Some(Unknown), None),  // 5
            answered("s#2", "a", Pass::Image, Some(Yes), Some(2.0)),      // 6: no blank record
            answered("s#3", "a", Pass::Image, Some(Yes), Some(2.0)),      // 7: the blank record failed
            answered("s#3", "a", Pass::BlankImage, None, None),           // 8
            answered("s#4", "a", Pass::Image, None, None),                // 9: the image record failed
            answered("s#4", "a", Pass::BlankImage, Some(No), Some(-1.0)), // 10
            answered("s#0", "a", Pass::SwapOpposite, Some(Yes), Some(1.0)), // 11: not an image-pass record
        ];
        let facts = RunFacts::of(&run, 1.0);
        let verdicts: Vec<Option<bool>> = run.iter().map(|r| same_answer_on_blank(r, &facts)).collect();
        assert_eq!(verdicts, vec![Some(true), None, Some(false), None, Some(true), None, None, None, None, None, None, None]);
        let pick = |f: &RecordFilter| (0..run.len()).filter(|&i| f.matches(&run[i], &facts)).collect::<Vec<_>>();
        assert_eq!(pick(&yes), vec![0, 4]);
        assert_eq!(pick(&no), vec![2]);
        assert_eq!(pick(&RecordFilter::default()).len(), run.len());
        // The blank answer is looked up per (sample, model), never across models.
        assert_eq!(facts.blank_answer(&run[2]), Some(Some(Yes)));
        assert_eq!(facts.blank_answer(&run[6]), None);
        assert_eq!(facts.blank_answer(&run[7]), Some(None));
    }

    #[test]
    fn the_condition_filters_read_from_the_query_and_refuse_a_bad_value() {
        let f = RecordFilter::from_pairs([("blank_same", "false"), ("near_tie", "true")]).unwrap();
        assert_eq!((f.blank_same, f.near_tie), (Some(false), Some(true)));
        assert_eq!(f.to_pairs(), vec![("blank_same".to_owned(), "false".to_owned()), ("near_tie".to_owned(), "true".to_owned())]);
        assert!(RecordFilter::from_pairs([("blank_same", "1")]).unwrap_err().contains("blank_same"));
        assert!(RecordFilter::from_pairs([("near_tie", "maybe")]).unwrap_err().contains("near_tie"));
        // Every pass is a filter value, by the name records.jsonl spells.
        for p in Pass::ALL {
            assert_eq!(RecordFilter::from_pairs([("pass", p.name())]).unwrap().pass, Some(p));
        }
    }
}
