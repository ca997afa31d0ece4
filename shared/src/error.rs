//! The one error type of the shared math. Each variant says what was wrong with which input.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricError {
    #[error("map is empty (h = {h}, w = {w})")]
    EmptyMap { h: usize, w: usize },
    #[error("map grid is {h} x {w} = {expected} cells but holds {got} values")]
    GridMismatch { h: usize, w: usize, expected: usize, got: usize },
    #[error("map value at cell {index} is {value}: attention maps must be finite and non-negative")]
    InvalidValue { index: usize, value: f64 },
    #[error("map sums to zero: there is no attention mass to normalise (never replaced by a uniform map)")]
    ZeroMass,
    #[error("maps have different grids ({a_h} x {a_w} vs {b_h} x {b_w}); resample both onto a common grid first")]
    GridsDiffer { a_h: usize, a_w: usize, b_h: usize, b_w: usize },
    #[error("mask has {got} cells but the map has {expected}")]
    MaskMismatch { expected: usize, got: usize },
    #[error("{what} needs at least {needed} inputs, got {got}")]
    TooFew { what: &'static str, needed: usize, got: usize },
    #[error("invalid crop box ({x0}, {y0}, {x1}, {y1}): needs x0 < x1 and y0 < y1")]
    InvalidCrop { x0: f64, y0: f64, x1: f64, y1: f64 },
    #[error("invalid argument: {0}")]
    Invalid(String),
}
