//! The one record filter: the server filters with it and the dashboard filters with it, so a
//! view means the same rows on both sides. It round-trips through a URL query string, which is
//! where the dashboard keeps its state.

use serde::{Deserialize, Serialize};

use crate::answer::Answer;
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
}

impl RecordFilter {
    pub fn matches(&self, r: &CaseRecord) -> bool {
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
            ..Default::default()
        };
        let pairs = f.to_pairs();
        let back = RecordFilter::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, f);
        assert!(RecordFilter::from_pairs([("focus_min", "x")]).unwrap_err().contains("focus_min"));
        assert_eq!(RecordFilter::from_pairs([("view", "grid")]).unwrap(), RecordFilter::default());
    }
}
