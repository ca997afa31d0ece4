//! Several images per question (issue 21) on the study page: which method's per-image maps are
//! shown (`images=` in the URL, attention when absent), which map of each image that is, and
//! each image's share of the method's mass as the page writes it. Pure Rust.

use radlens_shared::fusion::MapMethod;
use radlens_shared::record::ImageMapRecord;

use crate::api::ApiRecord;
use crate::url_state::parse_query;

/// The study view's query key of the per-image method (`images=gradcam`; absent: attention).
pub const IMAGES_KEY: &str = "images";

/// The per-image method a query asks for; `None` (attention) when absent or not a method.
pub fn image_method_from_query(query: &str) -> Option<MapMethod> {
    parse_query(query).into_iter().find(|(k, _)| k == IMAGES_KEY).and_then(|(_, v)| crate::grounding::overlay_method_of(&v))
}

/// The other methods the study's multi-image records have per-image maps of, in first-seen
/// order: the selector's choices besides attention.
pub fn image_methods(records: &[ApiRecord]) -> Vec<MapMethod> {
    let mut out = Vec::new();
    for m in records.iter().flat_map(|r| &r.record.images).flat_map(|i| &i.methods).map(|m| m.provenance.method) {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// Whether any of the records has several images (the selector is shown then).
pub fn any_multi_image(records: &[ApiRecord]) -> bool {
    records.iter().any(|r| !r.record.images.is_empty())
}

/// What one image shows under the selection: the method to fetch (its stored name is the
/// route's segment) and its share of that method's mass; `None` when the image has no map by
/// the selected method.
pub fn image_choice(image: &ImageMapRecord, selected: Option<MapMethod>) -> Option<(MapMethod, f64)> {
    match selected {
        None => Some((image.provenance.method, image.image_mass_share)),
        Some(m) if m == image.provenance.method => Some((m, image.image_mass_share)),
        Some(m) => image.methods.iter().find(|x| x.provenance.method == m).map(|x| (m, x.image_mass_share)),
    }
}

/// A mass share as the page shows it: a percentage with one decimal (`37.5`).
pub fn share_percent(share: f64) -> String {
    format!("{:.1}", 100.0 * share)
}

/// The selector's label of a per-image method.
pub fn method_choice_label(m: Option<MapMethod>) -> &'static str {
    match m {
        None => "attention",
        Some(m) => crate::methods::method_label(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(role: &str, share: f64, methods: &[(&str, f64)]) -> ImageMapRecord {
        let provenance = serde_json::json!({
            "model": "m", "method": "query_to_visual", "layer_range": "last-quarter", "layers": [1], "head_fusion": "mean",
            "query_mode": "query", "query_positions": [3],
            "geometry": {"h": 2, "w": 3, "crop": {"x0": 0.0, "y0": 0.0, "x1": 6.0, "y1": 4.0}, "image_w": 6, "image_h": 4}
        });
        let metrics = serde_json::json!({"entropy_nats": 1.0, "gini": 0.2, "top10_mass": 0.3, "focus": 0.4});
        let values = serde_json::json!({"file": "attention.bin", "offset": 0, "shape": [2, 3]});
        serde_json::from_value(serde_json::json!({
            "role": role, "image": format!("{role}.png"), "image_mass_share": share, "provenance": provenance,
            "metrics": metrics, "values": values,
            "methods": methods.iter().map(|(m, s)| {
                let mut p = provenance.clone();
                p["method"] = serde_json::json!(m);
                serde_json::json!({"image_mass_share": s, "provenance": p, "metrics": metrics, "values": values})
            }).collect::<Vec<_>>(),
        }))
        .expect("an image map record")
    }

    #[test]
    fn the_selection_picks_each_images_map_and_share() {
        let prior = image("prior", 0.25, &[("gradcam", 0.6)]);
        let current = image("current", 0.75, &[]);
        assert_eq!(image_choice(&prior, None), Some((MapMethod::QueryToVisual, 0.25)));
        assert_eq!(image_choice(&prior, Some(MapMethod::Gradcam)), Some((MapMethod::Gradcam, 0.6)));
        assert_eq!(image_choice(&current, Some(MapMethod::Gradcam)), None, "no Grad-CAM map of this image");
        assert_eq!(image_choice(&current, Some(MapMethod::QueryToVisual)), Some((MapMethod::QueryToVisual, 0.75)));
        assert_eq!(share_percent(0.25), "25.0");
        assert_eq!(share_percent(0.12345), "12.3");
        assert_eq!(method_choice_label(None), "attention");
    }

    #[test]
    fn the_method_lives_in_the_query() {
        assert_eq!(image_method_from_query("?opacity=0.5&images=gradcam"), Some(MapMethod::Gradcam));
        assert_eq!(image_method_from_query("images=occlusion"), Some(MapMethod::Occlusion));
        assert_eq!(image_method_from_query("images=nonsense"), None);
        assert_eq!(image_method_from_query(""), None);
    }
}
