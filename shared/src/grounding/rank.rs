//! Ranks with ties averaged and Spearman's rho (`scipy.stats.rankdata` / `spearmanr`), used by
//! the occlusion comparison (G1) and the randomisation check (G5).

use crate::MetricError;

/// 1-based ranks of `x`, ties given the mean of the ranks they span (`rankdata(method="average")`).
/// Values must be finite.
pub fn average_ranks(x: &[f64]) -> Result<Vec<f64>, MetricError> {
    if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricError::InvalidValue { index, value });
    }
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1 ..= end; their mean is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    Ok(ranks)
}

/// Spearman's rho: the Pearson correlation of the average ranks. `None` when either input is
/// constant (or has fewer than two values): the correlation is undefined there, never 0.
/// Errors: different lengths, a non-finite value.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<Option<f64>, MetricError> {
    if x.len() != y.len() {
        return Err(MetricError::Invalid(format!("spearman needs equal lengths, got {} and {}", x.len(), y.len())));
    }
    let (rx, ry) = (average_ranks(x)?, average_ranks(y)?);
    if is_constant(x) || is_constant(y) {
        return Ok(None);
    }
    Ok(Some(pearson(&rx, &ry)))
}

/// Whether all values are equal (`np.ptp(x) == 0`); true for fewer than two values.
pub fn is_constant(x: &[f64]) -> bool {
    x.windows(2).all(|w| w[0] == w[1])
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    // Rounding can push |r| a hair past 1 for perfectly (anti-)correlated inputs.
    (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_get_the_mean_of_their_ranks() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]).unwrap(), vec![3.5, 1.0, 3.5, 2.0]);
        assert!(average_ranks(&[1.0, f64::NAN]).is_err());
    }

    #[test]
    fn monotone_inputs_correlate_fully_and_constant_ones_not_at_all() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 300.0]).unwrap(), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(), Some(-1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[0.5, 0.5, 0.5]).unwrap(), None);
        assert_eq!(spearman(&[1.0], &[2.0]).unwrap(), None);
        assert!(spearman(&[1.0, 2.0], &[1.0]).is_err());
    }

    #[test]
    fn tied_ranks_match_scipy() {
        // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]).statistic = 0.9486832980505138
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap().unwrap();
        assert!((r - 0.948_683_298_050_513_8).abs() < 1e-12, "{r}");
    }
}
