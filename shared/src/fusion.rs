//! From raw attention rows to one map (spec "Aggregation of raw attention into one map").
//!
//! 1. [`image_map`]: one head's row restricted to the image tokens and renormalised; the mass
//!    before renormalising is its `image_share`.
//! 2. [`fuse_heads`]: head fusion per layer (mean, max, entropy-weighted).
//! 3. [`mean_of`]: layer aggregation over the layer range, and the same again over query rows
//!    (the answer tokens, or a term's prompt tokens).
//!
//! [`layer_map`] does steps 1-2 for one captured `[heads, keys]` row block, and [`fuse_rows`]
//! all three for a set of captured rows: the one entry point the backend (`fuse_captured`, at
//! capture time) and the dashboard (re-fusion in the browser) both call.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::geometry::MapGeometry;
use crate::map::normalize_vec;
use crate::metrics::focus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadFusion {
    #[default]
    Mean,
    Max,
    /// Heads weighted by their focus; the prototype's `1/(1+H)` weighting is not this.
    EntropyWeighted,
}

impl FromStr for HeadFusion {
    type Err = MetricError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Self::Mean),
            "max" => Ok(Self::Max),
            "entropy" | "entropy_weighted" | "entropy-weighted" => Ok(Self::EntropyWeighted),
            other => Err(MetricError::Invalid(format!("unknown head fusion {other:?} (mean, max, entropy)"))),
        }
    }
}

impl fmt::Display for HeadFusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mean => "mean",
            Self::Max => "max",
            Self::EntropyWeighted => "entropy_weighted",
        })
    }
}

/// Which language-model layers a map aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LayerRange {
    All,
    /// Layers `floor(3L/4) .. L-1` (LLaVA-7B: 24..31; Gemma3-4B: 25..33).
    #[default]
    LastQuarter,
    List(Vec<usize>),
}

impl LayerRange {
    /// The layer indices for a model with `num_layers` layers, ascending and distinct.
    pub fn resolve(&self, num_layers: usize) -> Result<Vec<usize>, MetricError> {
        if num_layers == 0 {
            return Err(MetricError::Invalid("model has no layers".into()));
        }
        match self {
            Self::All => Ok((0..num_layers).collect()),
            Self::LastQuarter => Ok((3 * num_layers / 4..num_layers).collect()),
            Self::List(layers) => {
                if let Some(bad) = layers.iter().find(|&&l| l >= num_layers) {
                    return Err(MetricError::Invalid(format!(
                        "layer {bad} out of range: the model has {num_layers} layers (0..{})",
                        num_layers - 1
                    )));
                }
                let mut v = layers.clone();
                v.sort_unstable();
                v.dedup();
                Ok(v)
            }
        }
    }
}

impl FromStr for LayerRange {
    type Err = MetricError;
    /// `all`, `last-quarter`, or a list such as `0,4,8-11`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "all" => Ok(Self::All),
            "last-quarter" | "last_quarter" => Ok(Self::LastQuarter),
            list => {
                let mut layers = Vec::new();
                for part in list.split(',').map(str::trim) {
                    let bad = || MetricError::Invalid(format!("bad layer list {s:?}: expected all, last-quarter or e.g. 0,4,8-11"));
                    if let Some((a, b)) = part.split_once('-') {
                        let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                        if a > b {
                            return Err(bad());
                        }
                        layers.extend(a..=b);
                    } else {
                        layers.push(part.parse().map_err(|_| bad())?);
                    }
                }
                Ok(Self::List(layers))
            }
        }
    }
}

impl fmt::Display for LayerRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::LastQuarter => f.write_str("last-quarter"),
            Self::List(l) => f.write_str(&l.iter().map(usize::to_string).collect::<Vec<_>>().join(",")),
        }
    }
}

impl TryFrom<String> for LayerRange {
    type Error = MetricError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LayerRange> for String {
    fn from(r: LayerRange) -> String {
        r.to_string()
    }
}

/// Which query rows a map is made from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum QueryMode {
    /// The last prompt token: the position that predicts the first answer token.
    #[default]
    Query,
    /// Mean of the maps of the generated answer tokens up to EOS.
    Answer,
    /// Mean over the prompt tokens whose text matches the word (see [`term_positions`]).
    Term(String),
}

impl FromStr for QueryMode {
    type Err = MetricError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "query" => Ok(Self::Query),
            "answer" => Ok(Self::Answer),
            _ => match s.strip_prefix("term:") {
                Some(word) if !word.trim().is_empty() => Ok(Self::Term(word.trim().to_string())),
                _ => Err(MetricError::Invalid(format!("unknown query mode {s:?} (query, answer, term:<word>)"))),
            },
        }
    }
}

impl fmt::Display for QueryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Query => f.write_str("query"),
            Self::Answer => f.write_str("answer"),
            Self::Term(w) => write!(f, "term:{w}"),
        }
    }
}

impl TryFrom<String> for QueryMode {
    type Error = MetricError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<QueryMode> for String {
    fn from(q: QueryMode) -> String {
        q.to_string()
    }
}

/// How a stored map was made. Anything but attention is labelled as such, never silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapMethod {
    QueryToVisual,
    TokenConditioned,
    Gradcam,
    /// The question's attention map over the map of a generic prompt ("Describe the image.").
    Relative,
    UniformFallback,
    /// Grounding G1: where hiding a cell weakens the model's own answer (the positive part of the
    /// occlusion support, normalised), on the occlusion grid over the same crop.
    Occlusion,
}

impl fmt::Display for MapMethod {
    /// The stored (serde) name, e.g. `query_to_visual`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::QueryToVisual => "query_to_visual",
            Self::TokenConditioned => "token_conditioned",
            Self::Gradcam => "gradcam",
            Self::Relative => "relative",
            Self::UniformFallback => "uniform_fallback",
            Self::Occlusion => "occlusion",
        })
    }
}

/// Everything needed to say where a stored map came from and what part of the image it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapProvenance {
    pub model: String,
    pub method: MapMethod,
    /// The layer range as asked for, and the layers it resolved to.
    pub layer_range: LayerRange,
    pub layers: Vec<usize>,
    pub head_fusion: HeadFusion,
    pub query_mode: QueryMode,
    /// Sequence positions of the query rows that were averaged.
    pub query_positions: Vec<usize>,
    /// Layers of the range left out because their rows put no mass on the image (e.g. a
    /// sliding-window layer whose window ends before the image tokens).
    #[serde(default)]
    pub layers_without_image: Vec<usize>,
    pub geometry: MapGeometry,
    /// Grad-CAM only: the block differentiated at, e.g. `vision.blocks.22.output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<crate::site::SiteName>,
    /// Why this map stands in for attention (a fallback), when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// A normalised map together with the attention mass its rows put on the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fused {
    pub values: Vec<f64>,
    /// Raw mass on image tokens before renormalising, averaged over heads, layers and rows.
    pub image_share: f64,
}

/// One head's attention row restricted to `image_positions` and renormalised, with the mass it
/// held there before renormalising.
pub fn image_map(row: &[f32], image_positions: &[usize]) -> Result<(Vec<f64>, f64), MetricError> {
    let mut restricted = Vec::with_capacity(image_positions.len());
    for &pos in image_positions {
        let v = *row
            .get(pos)
            .ok_or_else(|| MetricError::Invalid(format!("image token position {pos} is beyond the attention row of {} keys", row.len())))?;
        restricted.push(f64::from(v));
    }
    let share = restricted.iter().sum::<f64>();
    Ok((normalize_vec(&restricted)?, share))
}

/// Fuses per-head maps (each normalised, all of one length) into one normalised map.
pub fn fuse_heads(heads: &[Vec<f64>], fusion: HeadFusion) -> Result<Vec<f64>, MetricError> {
    let n = check_same_length(heads, "head fusion")?;
    let fused: Vec<f64> = match fusion {
        HeadFusion::Mean => weighted_sum(heads, &vec![1.0; heads.len()], n),
        HeadFusion::Max => (0..n).map(|i| heads.iter().map(|h| h[i]).fold(f64::NEG_INFINITY, f64::max)).collect(),
        HeadFusion::EntropyWeighted => {
            let weights: Vec<f64> = heads.iter().map(|h| focus(h)).collect();
            // Every head uniform: no head is more informative, so fall back to the mean.
            if weights.iter().sum::<f64>() > 0.0 {
                weighted_sum(heads, &weights, n)
            } else {
                weighted_sum(heads, &vec![1.0; heads.len()], n)
            }
        }
    };
    normalize_vec(&fused)
}

/// The mean of several fused maps (layers of one row, or rows of one answer), renormalised.
pub fn mean_of(items: &[Fused]) -> Result<Fused, MetricError> {
    let maps: Vec<Vec<f64>> = items.iter().map(|f| f.values.clone()).collect();
    let n = check_same_length(&maps, "map aggregation")?;
    let values = normalize_vec(&weighted_sum(&maps, &vec![1.0; maps.len()], n))?;
    let image_share = items.iter().map(|f| f.image_share).sum::<f64>() / items.len() as f64;
    Ok(Fused { values, image_share })
}

/// Steps 1-2 for one query row at one layer: `probs` is `[heads, keys]` row-major (post-softmax
/// probabilities over the whole sequence). A head that puts no mass on the image has no map and
/// is left out of the fusion; `None` when no head sees the image at all. The image share averages
/// all heads, zeros included.
pub fn layer_map(probs: &[f32], heads: usize, image_positions: &[usize], fusion: HeadFusion) -> Result<Option<Fused>, MetricError> {
    if heads == 0 || !probs.len().is_multiple_of(heads) {
        return Err(MetricError::Invalid(format!("{} attention values do not split into {heads} heads", probs.len())));
    }
    let keys = probs.len() / heads;
    let mut maps = Vec::with_capacity(heads);
    let mut share = 0.0;
    for (h, row) in probs.chunks_exact(keys).enumerate() {
        match image_map(row, image_positions) {
            Ok((map, s)) => {
                maps.push(map);
                share += s;
            }
            Err(MetricError::ZeroMass) => {}
            Err(e) => return Err(MetricError::Invalid(format!("head {h}: {e}"))),
        }
    }
    if maps.is_empty() {
        return Ok(None);
    }
    Ok(Some(Fused { values: fuse_heads(&maps, fusion)?, image_share: share / heads as f64 }))
}

/// One captured `[heads, keys]` row block of post-softmax probabilities (row-major).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadRows<'a> {
    pub probs: &'a [f32],
    pub heads: usize,
}

/// The fused map of several query rows over several layers, and which layers took part.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedRows {
    pub fused: Fused,
    /// The entries of `layers` where at least one row put mass on the image, ascending.
    pub layers_used: Vec<usize>,
    /// The entries of `layers` where no row put any mass on the image (sliding windows that end
    /// before the image), in `layers` order: left out and reported, never replaced by a uniform
    /// map.
    pub layers_without_image: Vec<usize>,
}

/// Steps 1-3 for `rows` query rows over `layers`: per row, [`layer_map`] of each layer (layers
/// without image mass left out) and [`mean_of`] those layers; then [`mean_of`] the rows (rows
/// that see the image at no layer left out). `row(r, layer)` gives the `[heads, keys]` block of
/// row `r` (`0..rows`) at `layer` (an entry of `layers`); its error is passed on, as is any
/// error of the fusion itself. `Ok(None)`: no row puts mass on the image at any layer (the
/// caller words that error, since it knows which rows and layers it asked for).
pub fn fuse_rows<'a, E: From<MetricError>>(
    rows: usize,
    layers: &[usize],
    image_positions: &[usize],
    fusion: HeadFusion,
    mut row: impl FnMut(usize, usize) -> Result<HeadRows<'a>, E>,
) -> Result<Option<FusedRows>, E> {
    let mut per_row = Vec::with_capacity(rows);
    let mut used = vec![false; layers.len()];
    for r in 0..rows {
        let mut per_layer = Vec::with_capacity(layers.len());
        for (i, &layer) in layers.iter().enumerate() {
            let block = row(r, layer)?;
            if let Some(fused) = layer_map(block.probs, block.heads, image_positions, fusion)? {
                per_layer.push(fused);
                used[i] = true;
            }
        }
        if !per_layer.is_empty() {
            per_row.push(mean_of(&per_layer)?);
        }
    }
    if per_row.is_empty() {
        return Ok(None);
    }
    let mut layers_used: Vec<usize> = layers.iter().zip(&used).filter(|&(_, &u)| u).map(|(&l, _)| l).collect();
    layers_used.sort_unstable();
    layers_used.dedup();
    let layers_without_image = layers.iter().copied().filter(|l| !layers_used.contains(l)).collect();
    Ok(Some(FusedRows { fused: mean_of(&per_row)?, layers_used, layers_without_image }))
}

fn check_same_length(maps: &[Vec<f64>], what: &'static str) -> Result<usize, MetricError> {
    let first = maps.first().ok_or(MetricError::TooFew { what, needed: 1, got: 0 })?;
    if let Some(bad) = maps.iter().find(|m| m.len() != first.len()) {
        return Err(MetricError::GridsDiffer { a_h: 1, a_w: first.len(), b_h: 1, b_w: bad.len() });
    }
    Ok(first.len())
}

fn weighted_sum(maps: &[Vec<f64>], weights: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    for (m, &w) in maps.iter().zip(weights) {
        for (o, &v) in out.iter_mut().zip(m) {
            *o += w * v;
        }
    }
    out
}

/// Prompt-token indices whose text matches `word` as a whole word, case-insensitive, across
/// sub-word splits: `["▁pleural", "▁eff", "usion"]` matches "effusion" at tokens 1 and 2.
/// Tokens are the tokenizer's pieces; `▁` (SentencePiece) and `Ġ` (byte-level BPE) mark spaces.
pub fn term_positions(tokens: &[&str], word: &str) -> Vec<usize> {
    let needle: Vec<char> = word.trim().to_lowercase().chars().collect();
    if needle.is_empty() {
        return Vec::new();
    }
    // The prompt's text as chars, each tagged with the token it came from.
    let mut text: Vec<char> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (t, piece) in tokens.iter().enumerate() {
        for ch in piece.chars().flat_map(char::to_lowercase) {
            text.push(if ch == '▁' || ch == 'Ġ' { ' ' } else { ch });
            owner.push(t);
        }
    }
    let boundary = |i: Option<&char>| i.is_none_or(|c| !c.is_alphanumeric());
    let mut hits = Vec::new();
    for start in 0..text.len().saturating_sub(needle.len() - 1) {
        let end = start + needle.len();
        if text[start..end] == needle[..] && boundary(start.checked_sub(1).and_then(|i| text.get(i))) && boundary(text.get(end)) {
            hits.extend_from_slice(&owner[start..end]);
        }
    }
    hits.sort_unstable();
    hits.dedup();
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_rows_averages_layers_then_rows_and_reports_blind_layers() {
        // 2 rows x 3 layers of one head over 3 keys; image = keys 1..3. Layer 7 never sees it.
        let block = |r: usize, l: usize| -> [f32; 3] {
            match (r, l) {
                (_, 7) => [1.0, 0.0, 0.0],
                (0, 3) => [0.0, 1.0, 0.0],
                (0, _) => [0.0, 0.0, 1.0],
                (_, 3) => [0.5, 0.25, 0.25],
                _ => [0.0, 0.5, 0.5],
            }
        };
        let store: Vec<Vec<[f32; 3]>> = (0..2).map(|r| [3, 5, 7].iter().map(|&l| block(r, l)).collect()).collect();
        let layers = [3, 5, 7];
        let out = fuse_rows::<MetricError>(2, &layers, &[1, 2], HeadFusion::Mean, |r, l| {
            let i = layers.iter().position(|&x| x == l).unwrap();
            Ok(HeadRows { probs: &store[r][i], heads: 1 })
        })
        .unwrap()
        .unwrap();
        assert_eq!(out.layers_used, vec![3, 5]);
        assert_eq!(out.layers_without_image, vec![7]);
        // Row 0: mean([1,0],[0,1]) = [.5,.5]; row 1: mean([.5,.5],[.5,.5]) = [.5,.5].
        assert_eq!(out.fused.values, vec![0.5, 0.5]);
        // Shares: row 0 (1 + 1)/2 = 1, row 1 (0.5 + 1)/2 = 0.75; mean 0.875.
        assert_eq!(out.fused.image_share, 0.875);
        // The same by hand with the building blocks.
        let by_hand = mean_of(&[
            mean_of(&[
                layer_map(&store[0][0], 1, &[1, 2], HeadFusion::Mean).unwrap().unwrap(),
                layer_map(&store[0][1], 1, &[1, 2], HeadFusion::Mean).unwrap().unwrap(),
            ])
            .unwrap(),
            mean_of(&[
                layer_map(&store[1][0], 1, &[1, 2], HeadFusion::Mean).unwrap().unwrap(),
                layer_map(&store[1][1], 1, &[1, 2], HeadFusion::Mean).unwrap().unwrap(),
            ])
            .unwrap(),
        ])
        .unwrap();
        assert_eq!(out.fused, by_hand);
    }

    #[test]
    fn fuse_rows_without_image_mass_is_none_and_passes_errors_on() {
        let blind = [1.0f32, 0.0, 0.0];
        let none = fuse_rows::<MetricError>(1, &[0, 1], &[1, 2], HeadFusion::Max, |_, _| Ok(HeadRows { probs: &blind, heads: 1 })).unwrap();
        assert_eq!(none, None);
        assert_eq!(fuse_rows::<MetricError>(0, &[0], &[1], HeadFusion::Mean, |_, _| unreachable!()).unwrap(), None);
        let missing =
            fuse_rows::<MetricError>(1, &[4], &[1], HeadFusion::Mean, |r, l| Err(MetricError::Invalid(format!("row {r} layer {l}"))));
        assert_eq!(missing.unwrap_err().to_string(), MetricError::Invalid("row 0 layer 4".into()).to_string());
        let bad = fuse_rows::<MetricError>(1, &[0], &[1], HeadFusion::Mean, |_, _| Ok(HeadRows { probs: &blind, heads: 2 }));
        assert!(bad.is_err());
    }

    #[test]
    fn last_quarter_of_32_layers_is_24_to_31() {
        assert_eq!(LayerRange::LastQuarter.resolve(32).unwrap(), (24..32).collect::<Vec<_>>());
        assert_eq!(LayerRange::LastQuarter.resolve(34).unwrap(), (25..34).collect::<Vec<_>>());
        assert_eq!("0,4,8-10".parse::<LayerRange>().unwrap().resolve(12).unwrap(), vec![0, 4, 8, 9, 10]);
        assert!("3".parse::<LayerRange>().unwrap().resolve(3).is_err());
        assert!("5-2".parse::<LayerRange>().is_err());
    }

    #[test]
    fn image_share_is_the_mass_before_renormalising() {
        // Keys: [bos, img, img, text]; the row puts 0.5 on the image.
        let (map, share) = image_map(&[0.25, 0.375, 0.125, 0.25], &[1, 2]).unwrap();
        assert_eq!(share, 0.5);
        assert_eq!(map, vec![0.75, 0.25]);
        assert!(image_map(&[1.0], &[3]).is_err());
    }

    #[test]
    fn uniform_heads_fall_back_to_the_mean_under_entropy_weighting() {
        let heads = vec![vec![0.5, 0.5], vec![0.5, 0.5]];
        assert_eq!(fuse_heads(&heads, HeadFusion::EntropyWeighted).unwrap(), vec![0.5, 0.5]);
    }

    #[test]
    fn layer_map_fuses_heads_of_one_row_block() {
        // Two heads over 3 keys, image = keys 1..3.
        let probs = [0.5, 0.5, 0.0, 0.0, 0.25, 0.75];
        let fused = layer_map(&probs, 2, &[1, 2], HeadFusion::Mean).unwrap().unwrap();
        assert_eq!(fused.values, vec![0.625, 0.375]);
        assert_eq!(fused.image_share, 0.75);
    }

    #[test]
    fn heads_that_cannot_see_the_image_are_left_out_not_made_uniform() {
        // Head 0 puts nothing on the image (keys 1..3); head 1 does.
        let probs = [1.0, 0.0, 0.0, 0.0, 0.25, 0.75];
        let fused = layer_map(&probs, 2, &[1, 2], HeadFusion::Mean).unwrap().unwrap();
        assert_eq!(fused.values, vec![0.25, 0.75]);
        assert_eq!(fused.image_share, 0.5);
        assert_eq!(layer_map(&[1.0, 0.0, 0.0], 1, &[1, 2], HeadFusion::Mean).unwrap(), None);
    }

    #[test]
    fn terms_match_whole_words_across_subword_pieces() {
        let toks = ["▁Is", "▁there", "▁pleural", "▁eff", "usion", "?", "▁effusions"];
        assert_eq!(term_positions(&toks, "Effusion"), vec![3, 4]);
        assert_eq!(term_positions(&toks, "pleural effusion"), vec![2, 3, 4]);
        assert!(term_positions(&toks, "ural").is_empty());
    }

    #[test]
    fn methods_print_as_they_are_stored() {
        for m in [
            MapMethod::QueryToVisual,
            MapMethod::TokenConditioned,
            MapMethod::Gradcam,
            MapMethod::Relative,
            MapMethod::UniformFallback,
            MapMethod::Occlusion,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::Value::String(m.to_string()));
        }
    }

    #[test]
    fn modes_round_trip_through_text() {
        for s in ["query", "answer", "term:effusion"] {
            assert_eq!(s.parse::<QueryMode>().unwrap().to_string(), s);
        }
        assert!("term:".parse::<QueryMode>().is_err());
        assert_eq!("entropy".parse::<HeadFusion>().unwrap(), HeadFusion::EntropyWeighted);
    }
}
