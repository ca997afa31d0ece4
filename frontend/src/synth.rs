//! The playground's synthetic attention map: a 2-D Gaussian blob over a uniform floor.

use radlens_shared::AttentionMap;

use crate::url_state::PlaygroundState;

/// The `n x n` map of `state`, row-major, row 0 at the top:
/// `value(row, col) = floor + peak * exp(-d² / (2 σ²))`, where `d` is the distance in cells
/// between the cell centre `(col + ½, row + ½)` and the blob centre `(cx · n, cy · n)`.
///
/// The map is returned unvalidated (built from its public fields): a state with `peak = 0` and
/// `floor = 0` gives an all-zero map, which the page still draws and whose metrics report
/// `MetricError::ZeroMass`.
pub fn synthesize(state: &PlaygroundState) -> AttentionMap {
    let n = state.n;
    let (cx, cy) = (state.cx * n as f64, state.cy * n as f64);
    let two_var = 2.0 * state.sigma * state.sigma;
    let mut values = Vec::with_capacity(n * n);
    for row in 0..n {
        let dy = row as f64 + 0.5 - cy;
        for col in 0..n {
            let dx = col as f64 + 0.5 - cx;
            values.push(state.floor + state.peak * (-(dx * dx + dy * dy) / two_var).exp());
        }
    }
    AttentionMap { h: n, w: n, values }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url_state::Param;

    #[test]
    fn default_map_has_its_maximum_at_the_blob_centre() {
        let s = PlaygroundState::default();
        let m = synthesize(&s);
        assert_eq!((m.h, m.w, m.values.len()), (24, 24, 576));
        let argmax = (0..m.values.len()).max_by(|&a, &b| m.values[a].total_cmp(&m.values[b])).unwrap();
        let (row, col) = (argmax / m.w, argmax % m.w);
        assert_eq!(col, (s.cx * 24.0) as usize);
        assert_eq!(row, (s.cy * 24.0) as usize);
        assert!(m.values.iter().all(|&v| v >= s.floor && v <= s.floor + s.peak));
        assert!(AttentionMap::new(m.h, m.w, m.values.clone()).is_ok());
    }

    #[test]
    fn a_centred_blob_is_symmetric() {
        let mut s = PlaygroundState::default();
        s.set(Param::Cx, 0.5);
        s.set(Param::Cy, 0.5);
        s.set(Param::N, 10.0);
        let m = synthesize(&s);
        for r in 0..10 {
            for c in 0..10 {
                let v = m.values[r * 10 + c];
                assert!((v - m.values[c * 10 + r]).abs() < 1e-15, "transpose");
                assert!((v - m.values[(9 - r) * 10 + (9 - c)]).abs() < 1e-15, "point mirror");
            }
        }
    }

    #[test]
    fn floor_only_map_is_uniform_and_zero_map_is_zero() {
        let mut s = PlaygroundState::default();
        s.set(Param::Peak, 0.0);
        assert!(synthesize(&s).values.iter().all(|&v| v == s.floor));
        s.set(Param::Floor, 0.0);
        assert!(synthesize(&s).values.iter().all(|&v| v == 0.0));
    }
}
