//! An attention map: non-negative mass over an `h x w` grid, row-major.

use serde::{Deserialize, Serialize};

use crate::MetricError;

/// A raw (not necessarily normalised) map as stored on disk and sent to the browser.
/// `{"h": H, "w": W, "values": [..row-major..]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionMap {
    pub h: usize,
    pub w: usize,
    pub values: Vec<f64>,
}

impl AttentionMap {
    /// A map whose shape and values are checked: non-empty, `h * w` values, all finite and >= 0,
    /// and a positive sum.
    pub fn new(h: usize, w: usize, values: Vec<f64>) -> Result<Self, MetricError> {
        let map = Self { h, w, values };
        map.validate()?;
        Ok(map)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Checks the invariants of [`AttentionMap::new`]; deserialised maps go through here too.
    pub fn validate(&self) -> Result<(), MetricError> {
        validate_values(self.h, self.w, &self.values).map(|_| ())
    }

    /// `p = a / sum(a)`. An error for a zero, negative or non-finite map: never a silent uniform.
    pub fn normalized(&self) -> Result<Vec<f64>, MetricError> {
        normalize(self.h, self.w, &self.values)
    }
}

/// Checks a grid's values and returns their sum.
fn validate_values(h: usize, w: usize, values: &[f64]) -> Result<f64, MetricError> {
    if h == 0 || w == 0 {
        return Err(MetricError::EmptyMap { h, w });
    }
    let expected = h.checked_mul(w).ok_or_else(|| MetricError::Invalid(format!("grid {h} x {w} overflows")))?;
    if values.len() != expected {
        return Err(MetricError::GridMismatch { h, w, expected, got: values.len() });
    }
    let mut sum = 0.0;
    for (index, &value) in values.iter().enumerate() {
        if !value.is_finite() || value < 0.0 {
            return Err(MetricError::InvalidValue { index, value });
        }
        sum += value;
    }
    if sum <= 0.0 || !sum.is_finite() {
        return Err(MetricError::ZeroMass);
    }
    Ok(sum)
}

/// Normalises an `h x w` grid of mass to a probability vector.
pub fn normalize(h: usize, w: usize, values: &[f64]) -> Result<Vec<f64>, MetricError> {
    let sum = validate_values(h, w, values)?;
    Ok(values.iter().map(|v| v / sum).collect())
}

/// Normalises a flat vector (a 1 x n grid).
pub fn normalize_vec(values: &[f64]) -> Result<Vec<f64>, MetricError> {
    normalize(1, values.len(), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_divides_by_the_sum() {
        let m = AttentionMap::new(1, 4, vec![1.0, 1.0, 2.0, 0.0]).unwrap();
        assert_eq!(m.normalized().unwrap(), vec![0.25, 0.25, 0.5, 0.0]);
    }

    #[test]
    fn zero_negative_and_non_finite_maps_are_errors() {
        assert_eq!(AttentionMap::new(1, 2, vec![0.0, 0.0]), Err(MetricError::ZeroMass));
        assert!(matches!(AttentionMap::new(1, 2, vec![1.0, -0.1]), Err(MetricError::InvalidValue { index: 1, .. })));
        assert!(matches!(AttentionMap::new(1, 2, vec![f64::NAN, 1.0]), Err(MetricError::InvalidValue { index: 0, .. })));
        assert!(matches!(AttentionMap::new(1, 2, vec![f64::INFINITY, 1.0]), Err(MetricError::InvalidValue { .. })));
    }

    #[test]
    fn shape_must_match_the_values() {
        assert!(matches!(AttentionMap::new(2, 2, vec![1.0; 3]), Err(MetricError::GridMismatch { expected: 4, got: 3, .. })));
        assert!(matches!(AttentionMap::new(0, 2, vec![]), Err(MetricError::EmptyMap { .. })));
    }
}
