//! Types and math that the radlens backend and the browser dashboard share.
//!
//! Every definition follows `fixtures/spec/metrics.md` (a copy of the team's spec) to the letter;
//! the golden tests in `tests/golden.rs` check each one against numpy/scipy/statsmodels values.
//!
//! Brief overview:
//! - [`map`]: [`map::AttentionMap`] (an `h x w` grid of non-negative mass) and its normalisation.
//! - [`metrics`]: entropy, focus, Gini, top-10% mass, Jensen-Shannon, consistency.
//! - [`roi`]: relevance mass, rank accuracy and pointing game against a cell mask.
//! - [`geometry`]: crop boxes, bounding box -> cell mask, mass-preserving resampling.
//! - [`fusion`]: raw attention rows -> one map (image restriction, head fusion, layer and query
//!   aggregation) with its provenance.
//! - [`grounding`]: grounding.md G1-G7: occlusion agreement, box controls, box score, null
//!   edits, the randomisation check and decision quality.
//! - [`answer`]: `parse_answer` and the yes/no decision margin.
//! - [`stats`]: robustness statistics, cluster-bootstrap intervals, clustered and exact McNemar.
//! - [`record`]: the versioned serde types of a run directory.
//! - [`trust`]: deletion cells, attention sinks, the relative map and method agreement.
//! - [`records_csv`]: a record as CSV cells and the CSV writer (`records.csv`, the dashboard's
//!   download).
//! - [`views`]: "flipped vs base" and "models disagree" over a run's records, and their sort order.
//! - [`static_site`]: the file layout of a static export (`radlens export`).
//! - [`site`]: capture-site names (`text.blocks.12.attn.pattern`), typed, printed and parsed.
//! - [`variants`]: rule-based paraphrases of closed questions (`radlens variants`) and the
//!   radiology lexicon behind them.
//! - [`api`]: the server's route paths and every JSON payload between server and dashboard.
//!
//! No I/O and no platform code: this crate compiles for `wasm32-unknown-unknown`.

pub mod answer;
pub mod api;
pub mod error;
pub mod filter;
pub mod fusion;
pub mod geometry;
pub mod grounding;
pub mod map;
pub mod metrics;
pub mod record;
pub mod records_csv;
pub mod roi;
pub mod site;
pub mod static_site;
pub mod stats;
pub mod trust;
pub mod variants;
pub mod views;

pub use error::MetricError;
pub use map::AttentionMap;
