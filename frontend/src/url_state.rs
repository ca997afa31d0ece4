//! The playground's parameters and their form in the URL query string.
//!
//! Every control's value lives in the query (`?n=24&cx=0.35&…`), so a shared link reproduces
//! the view. Parsing is forgiving: unknown keys are kept (other pages may add their own),
//! missing or unparsable values fall back to the defaults, and out-of-range values are clamped.

use std::fmt::Write as _;

/// One parameter of the playground.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    /// Grid size: the map has `n x n` cells.
    N,
    /// Blob centre, x, as a fraction of the width (0 = left edge).
    Cx,
    /// Blob centre, y, as a fraction of the height (0 = top edge).
    Cy,
    /// Spread of the Gaussian blob, in cells.
    Sigma,
    /// Uniform floor added to every cell (peak of the blob is `peak`).
    Floor,
    /// Height of the blob.
    Peak,
}

/// How a parameter is named, bounded and shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// The query key, also the `id` of its `<input>`.
    pub key: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub min: f64,
    pub max: f64,
    pub step: f64,
    pub default: f64,
    /// Decimals shown next to the slider.
    pub decimals: usize,
}

impl Param {
    pub const ALL: [Param; 6] = [Param::N, Param::Cx, Param::Cy, Param::Sigma, Param::Floor, Param::Peak];

    pub fn spec(self) -> &'static ParamSpec {
        match self {
            Param::N => &ParamSpec {
                key: "n",
                label: "Grid size",
                help: "The map has n × n cells (e.g. 24 × 24 vision-transformer patches).",
                min: 4.0,
                max: 64.0,
                step: 1.0,
                default: 24.0,
                decimals: 0,
            },
            Param::Cx => &ParamSpec {
                key: "cx",
                label: "Blob centre x",
                help: "Horizontal position of the blob, 0 = left edge, 1 = right edge.",
                min: 0.0,
                max: 1.0,
                step: 0.01,
                default: 0.38,
                decimals: 2,
            },
            Param::Cy => &ParamSpec {
                key: "cy",
                label: "Blob centre y",
                help: "Vertical position of the blob, 0 = top edge, 1 = bottom edge.",
                min: 0.0,
                max: 1.0,
                step: 0.01,
                default: 0.45,
                decimals: 2,
            },
            Param::Sigma => &ParamSpec {
                key: "sigma",
                label: "Spread σ (cells)",
                help: "Standard deviation of the Gaussian blob, in cells.",
                min: 0.3,
                max: 16.0,
                step: 0.1,
                default: 3.0,
                decimals: 1,
            },
            Param::Floor => &ParamSpec {
                key: "floor",
                label: "Uniform floor",
                help: "Mass added to every cell, relative to a blob peak of 1.",
                min: 0.0,
                max: 0.5,
                step: 0.005,
                default: 0.02,
                decimals: 3,
            },
            Param::Peak => &ParamSpec {
                key: "peak",
                label: "Blob peak",
                help: "Height of the blob. Set peak and floor to 0 to see how an empty map is reported.",
                min: 0.0,
                max: 1.0,
                step: 0.05,
                default: 1.0,
                decimals: 2,
            },
        }
    }

    pub fn from_key(key: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.spec().key == key)
    }
}

/// All parameters of the playground. Always within the bounds of [`Param::spec`]
/// (use [`PlaygroundState::set`], which clamps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaygroundState {
    pub n: usize,
    pub cx: f64,
    pub cy: f64,
    pub sigma: f64,
    pub floor: f64,
    pub peak: f64,
}

impl Default for PlaygroundState {
    fn default() -> Self {
        let mut s = Self { n: 0, cx: 0.0, cy: 0.0, sigma: 0.0, floor: 0.0, peak: 0.0 };
        for p in Param::ALL {
            s.set(p, p.spec().default);
        }
        s
    }
}

impl PlaygroundState {
    pub fn get(&self, p: Param) -> f64 {
        match p {
            Param::N => self.n as f64,
            Param::Cx => self.cx,
            Param::Cy => self.cy,
            Param::Sigma => self.sigma,
            Param::Floor => self.floor,
            Param::Peak => self.peak,
        }
    }

    /// Sets one parameter, clamped to its bounds; the grid size is rounded to a whole number.
    /// A non-finite value resets the parameter to its default.
    pub fn set(&mut self, p: Param, value: f64) {
        let spec = p.spec();
        let v = if value.is_finite() { value.clamp(spec.min, spec.max) } else { spec.default };
        match p {
            Param::N => self.n = v.round() as usize,
            Param::Cx => self.cx = v,
            Param::Cy => self.cy = v,
            Param::Sigma => self.sigma = v,
            Param::Floor => self.floor = v,
            Param::Peak => self.peak = v,
        }
    }

    /// The value as the slider next to it shows it.
    pub fn display(&self, p: Param) -> String {
        format!("{:.*}", p.spec().decimals, self.get(p))
    }

    /// Reads the state from a query string (with or without the leading `?`). The first
    /// occurrence of a key wins, as with `URLSearchParams.get`.
    pub fn from_query(query: &str) -> Self {
        let mut state = Self::default();
        let mut seen = Vec::new();
        for (key, value) in parse_query(query) {
            let Some(p) = Param::from_key(&key) else {
                continue;
            };
            if seen.contains(&p) {
                continue;
            }
            seen.push(p);
            if let Ok(v) = value.trim().parse::<f64>() {
                state.set(p, v);
            }
        }
        state
    }

    /// This state as a query string without the leading `?`, every parameter included.
    pub fn to_query(&self) -> String {
        self.merge_into_query("")
    }

    /// `existing` (a query string, `?` optional) with this state's parameters written into it:
    /// keys of other components keep their place and value, ours are replaced (duplicates of
    /// ours dropped) or appended in [`Param::ALL`] order. No leading `?`.
    pub fn merge_into_query(&self, existing: &str) -> String {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut written = Vec::new();
        for (key, value) in parse_query(existing) {
            match Param::from_key(&key) {
                Some(p) if written.contains(&p) => {}
                Some(p) => {
                    written.push(p);
                    out.push((key, self.query_value(p)));
                }
                None => out.push((key, value)),
            }
        }
        for p in Param::ALL {
            if !written.contains(&p) {
                out.push((p.spec().key.to_owned(), self.query_value(p)));
            }
        }
        let mut q = String::new();
        for (i, (k, v)) in out.iter().enumerate() {
            if i > 0 {
                q.push('&');
            }
            let _ = write!(q, "{}={}", encode_component(k), encode_component(v));
        }
        q
    }

    /// The shortest text that parses back to the same value (`0.35`, not `0.35000000000000003`
    /// unless that is the value).
    fn query_value(&self, p: Param) -> String {
        match p {
            Param::N => self.n.to_string(),
            _ => format!("{}", self.get(p)),
        }
    }
}

/// `a=1&b=x%20y` -> `[("a", "1"), ("b", "x y")]`. A leading `?` is skipped, empty pairs are
/// ignored, a key without `=` has an empty value, `+` means a space.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The route of a study's view, `/runs/RUN/studies/SEGMENT`: the segment is the study's folder
/// name in a static export (`radlens_shared::static_site::study_segment`, URL-unreserved
/// characters only, so every decoding layer leaves it as it is), so a file host finds that
/// folder for any study id.
pub fn study_path(run: &str, study_id: &str) -> String {
    format!("/runs/{}/studies/{}", encode_component(run), encode_component(&radlens_shared::static_site::study_segment(study_id)))
}

/// The study id of the `:study` route parameter (the segment of [`study_path`]).
pub fn study_of_param(param: &str) -> String {
    radlens_shared::static_site::study_of_segment(param)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_links_carry_the_export_folder_of_any_id() {
        assert_eq!(study_path("demo", "00021397_000"), "/runs/demo/studies/00021397_000");
        assert_eq!(study_path("demo", "pt 7/a"), "/runs/demo/studies/pt~207~2Fa");
        assert_eq!(study_path("demo", ".."), "/runs/demo/studies/~2E~2E");
        for id in ["pt 7/a", "..", "", "50%", "a%41", "é/\\x~"] {
            let seg = radlens_shared::static_site::study_segment(id);
            // Unreserved characters only: the URL segment is the folder name itself.
            assert_eq!(encode_component(&seg), seg, "{id:?}");
            assert_eq!(study_of_param(&seg), id, "{id:?}");
        }
    }

    #[test]
    fn defaults_are_within_bounds_and_round_trip() {
        let s = PlaygroundState::default();
        assert_eq!(s.n, 24);
        for p in Param::ALL {
            let spec = p.spec();
            assert!(spec.min <= spec.default && spec.default <= spec.max, "{}", spec.key);
            assert_eq!(s.get(p), spec.default);
        }
        assert_eq!(s.to_query(), "n=24&cx=0.38&cy=0.45&sigma=3&floor=0.02&peak=1");
        assert_eq!(PlaygroundState::from_query(&s.to_query()), s);
        assert_eq!(PlaygroundState::from_query(""), s);
        assert_eq!(PlaygroundState::from_query("?"), s);
    }

    #[test]
    fn query_values_are_read_clamped_and_defaulted() {
        let s = PlaygroundState::from_query("?cx=0.25&sigma=2.5&n=32.4&floor=-3&peak=abc&cy=7");
        assert_eq!(s.cx, 0.25);
        assert_eq!(s.sigma, 2.5);
        assert_eq!(s.n, 32);
        assert_eq!(s.floor, 0.0);
        assert_eq!(s.peak, 1.0, "unparsable -> default");
        assert_eq!(s.cy, 1.0, "clamped to max");
        let s = PlaygroundState::from_query("n=NaN&sigma=inf&cx=%200.5%20");
        assert_eq!(s.n, 24);
        assert_eq!(s.sigma, 3.0, "non-finite -> default");
        assert_eq!(s.cx, 0.5, "percent-decoded and trimmed");
    }

    #[test]
    fn first_occurrence_wins() {
        assert_eq!(PlaygroundState::from_query("cx=0.1&cx=0.9").cx, 0.1);
    }

    #[test]
    fn values_round_trip_exactly() {
        let mut s = PlaygroundState::default();
        s.set(Param::Cx, 0.1 + 0.2);
        s.set(Param::Sigma, 1.0 / 3.0);
        s.set(Param::Floor, 0.005);
        let back = PlaygroundState::from_query(&s.to_query());
        assert_eq!(back, s);
        assert!(s.to_query().contains("cx=0.30000000000000004"));
    }

    #[test]
    fn merge_keeps_foreign_keys_and_replaces_ours() {
        let mut s = PlaygroundState::default();
        s.set(Param::Cx, 0.7);
        let q = s.merge_into_query("?run=abc%2Fdef&cx=0.1&tab=maps&cx=0.2");
        assert_eq!(q, "run=abc%2Fdef&cx=0.7&tab=maps&n=24&cy=0.45&sigma=3&floor=0.02&peak=1");
        let pairs = parse_query(&q);
        assert_eq!(pairs[0], ("run".to_owned(), "abc/def".to_owned()));
        assert_eq!(PlaygroundState::from_query(&q), s);
    }

    #[test]
    fn query_parsing_edge_cases() {
        assert_eq!(
            parse_query("a&&b=&c=1+2&d=%zz&e=%4"),
            vec![
                ("a".to_owned(), String::new()),
                ("b".to_owned(), String::new()),
                ("c".to_owned(), "1 2".to_owned()),
                ("d".to_owned(), "%zz".to_owned()),
                ("e".to_owned(), "%4".to_owned()),
            ]
        );
        assert_eq!(encode_component("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(decode_component(&encode_component("a b/ü")), "a b/ü");
    }

    #[test]
    fn display_uses_the_spec_decimals() {
        let s = PlaygroundState::default();
        assert_eq!(s.display(Param::N), "24");
        assert_eq!(s.display(Param::Sigma), "3.0");
        assert_eq!(s.display(Param::Floor), "0.020");
    }
}
