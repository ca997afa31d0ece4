//! View model of the metrics playground: the synthesised map and what `radlens_shared`
//! (the code the backend uses) says about it.

use radlens_shared::AttentionMap;
use radlens_shared::metrics::{MapMetrics, js_distance};

use crate::synth::synthesize;
use crate::url_state::PlaygroundState;

/// One number shown on the page. `key` is its `data-metric` attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricInfo {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub hint: &'static str,
}

/// The four single-map metrics, in the order the page shows them.
pub const MAP_METRICS: [MetricInfo; 4] = [
    MetricInfo { key: "entropy", label: "Entropy", unit: "nats", hint: "−Σ p ln p; a uniform map has ln N." },
    MetricInfo { key: "focus", label: "Focus", unit: "", hint: "1 − H / ln N: 0 = uniform, 1 = a single cell." },
    MetricInfo { key: "gini", label: "Gini", unit: "", hint: "Inequality of the cell masses: 0 = uniform." },
    MetricInfo { key: "top10", label: "Top-10% mass", unit: "", hint: "Share of the mass in the hottest 10% of cells." },
];

/// Jensen-Shannon distance between the map and a uniform map of the same grid.
pub const JS_UNIFORM: MetricInfo =
    MetricInfo {
        key: "js_uniform", label: "JS distance to uniform", unit: "bits", hint: "√(JS divergence) to the flat map: 0 = uniform."
    };

/// What the page shows for one state.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The synthesised map (possibly all zero).
    pub map: AttentionMap,
    /// The four metrics, or the error message of `radlens_shared`.
    pub metrics: Result<MapMetrics, String>,
    /// JS distance to uniform (bits); `None` when the metrics failed.
    pub js_uniform: Option<f64>,
}

impl Evaluation {
    /// `ln N`, the entropy of a uniform map on this grid.
    pub fn max_entropy(&self) -> f64 {
        (self.map.values.len() as f64).ln()
    }

    /// The value shown under `data-metric = key` (one of [`MAP_METRICS`] or [`JS_UNIFORM`]).
    pub fn value(&self, key: &str) -> Option<f64> {
        if key == JS_UNIFORM.key {
            return self.js_uniform;
        }
        self.metrics.as_ref().ok().and_then(|m| metric_value(m, key))
    }
}

/// Picks one of [`MAP_METRICS`] out of a [`MapMetrics`] by its key.
pub fn metric_value(m: &MapMetrics, key: &str) -> Option<f64> {
    match key {
        "entropy" => Some(m.entropy_nats),
        "focus" => Some(m.focus),
        "gini" => Some(m.gini),
        "top10" => Some(m.top10_mass),
        _ => None,
    }
}

/// Synthesises the map of `state` and computes its metrics with `radlens_shared`.
/// Errors (e.g. an all-zero map) become a message, never a panic.
pub fn evaluate(state: &PlaygroundState) -> Evaluation {
    let map = synthesize(state);
    let metrics = AttentionMap::new(map.h, map.w, map.values.clone()).and_then(|m| MapMetrics::of(&m)).map_err(|e| e.to_string());
    let js_uniform = match metrics {
        Ok(_) => js_distance(&map.values, &vec![1.0; map.values.len()]).ok(),
        Err(_) => None,
    };
    Evaluation { map, metrics, js_uniform }
}

/// How a metric is printed on the page (the exact value goes into `data-value`).
pub fn format_metric(v: f64) -> String {
    format!("{v:.4}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url_state::Param;

    #[test]
    fn default_state_has_a_concentrated_map() {
        let e = evaluate(&PlaygroundState::default());
        let m = e.metrics.clone().unwrap();
        assert!(m.entropy_nats > 0.0 && m.entropy_nats < e.max_entropy());
        assert!(m.focus > 0.05 && m.focus < 1.0, "{m:?}");
        assert!(m.gini > 0.3 && m.gini < 1.0, "{m:?}");
        assert!(m.top10_mass > 0.1 && m.top10_mass < 1.0, "{m:?}");
        let js = e.js_uniform.unwrap();
        assert!(js > 0.0 && js < 1.0);
        for info in MAP_METRICS {
            assert!(e.value(info.key).is_some(), "{}", info.key);
        }
        assert_eq!(e.value("entropy"), Some(m.entropy_nats));
        assert_eq!(e.value("nope"), None);
    }

    #[test]
    fn narrower_blobs_are_more_focused() {
        // Without a floor: with one, a narrow blob holds less mass than the floor does.
        let mut s = PlaygroundState::default();
        s.set(Param::Floor, 0.0);
        s.set(Param::Sigma, 1.0);
        let narrow = evaluate(&s).metrics.unwrap();
        s.set(Param::Sigma, 6.0);
        let wide = evaluate(&s).metrics.unwrap();
        assert!(narrow.focus > wide.focus);
        assert!(narrow.gini > wide.gini);
        assert!(narrow.top10_mass > wide.top10_mass);
    }

    #[test]
    fn uniform_map_has_zero_focus() {
        let mut s = PlaygroundState::default();
        s.set(Param::Peak, 0.0);
        let e = evaluate(&s);
        let m = e.metrics.clone().unwrap();
        assert!(m.focus.abs() < 1e-12);
        assert!((m.entropy_nats - e.max_entropy()).abs() < 1e-12);
        assert!(e.js_uniform.unwrap().abs() < 1e-6);
    }

    #[test]
    fn an_all_zero_map_is_an_error_message_not_a_panic() {
        let mut s = PlaygroundState::default();
        s.set(Param::Peak, 0.0);
        s.set(Param::Floor, 0.0);
        let e = evaluate(&s);
        let msg = e.metrics.clone().unwrap_err();
        assert!(msg.contains("zero"), "{msg}");
        assert_eq!(e.js_uniform, None);
        assert_eq!(e.value("focus"), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(format_metric(0.123456), "0.1235");
        assert_eq!(format_metric(2.0), "2.0000");
    }
}
