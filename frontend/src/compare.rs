//! View model of the compare page (`/compare`): the JSON answer of `POST /api/compare`
//! (every model of the server's `--model` list on one uploaded image and question) and the
//! text the page shows for it. Pure Rust.

use crate::study::MapPayload;
use crate::url_state::parse_query;

/// `POST /api/compare` (the shared wire types).
pub use radlens_shared::api::{CompareResponse, CrossModel, ImageSize, ModelAnswer};

/// The question kept in the URL (`q=`).
pub fn question_from_query(query: &str) -> String {
    parse_query(query).into_iter().find(|(k, _)| k == "q").map(|(_, v)| v).unwrap_or_default()
}

/// The architecture as text (`"—"` when absent).
pub fn architecture_text(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "—".into())
}

/// The metrics line of a map.
pub fn metrics_line(m: &MapPayload) -> String {
    format!(
        "focus {:.3} · entropy {:.3} nats · gini {:.3} · top-10% {:.3} · image share {:.3}",
        m.metrics.focus, m.metrics.entropy_nats, m.metrics.gini, m.metrics.top10_mass, m.image_share
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_is_read_from_the_query() {
        assert_eq!(question_from_query("?q=is%20there%20an%20effusion%3F"), "is there an effusion?");
        assert_eq!(question_from_query("x=1"), "");
    }

    #[test]
    fn an_answer_with_an_erroring_model_decodes() {
        let v = serde_json::json!({
            "question": "q",
            "image": {"width": 3, "height": 2},
            "models": [{"model": "a", "error": "the model could not be loaded"}],
            "cross_model": [{"model_a": "a", "model_b": "b", "grid": 32, "js_divergence": 0.25, "js_distance": 0.5}]
        });
        let r: CompareResponse = serde_json::from_value(v).unwrap();
        assert_eq!(r.models[0].error.as_deref(), Some("the model could not be loaded"));
        assert!(r.models[0].map.is_none());
        assert_eq!(r.cross_model[0].js_distance, 0.5);
        assert_eq!(architecture_text(&None), "—");
        assert_eq!(architecture_text(&Some("llava".into())), "llava");
    }
}
