//! `POST /api/compare`: every model answers about one image, with maps and the cross-model
//! divergence.

use super::*;

#[actix_web::test]
async fn compare_answers_with_every_model_and_cross_model_divergence() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let png = std::fs::read(fixture().images.join("00021397_000.png")).unwrap();
    let body =
        radlens::server::multipart::build("B0und", &[("image", Some("x.png"), &png), ("question", None, b"Is there a pleural effusion?")]);
    let req = authed(post("/api/compare"), &state)
        .insert_header(("Content-Type", "multipart/form-data; boundary=B0und"))
        .set_payload(body)
        .to_request();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_no_leak(&r, "compare");
    let v = r.json();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), fixture().models.len());
    for m in models {
        assert!(m["error"].is_null(), "{m}");
        assert!(m["answer"].is_string() && m["parsed_answer"].is_string(), "{m}");
        let (h, w) = (m["map"]["h"].as_u64().unwrap() as usize, m["map"]["w"].as_u64().unwrap() as usize);
        assert_eq!(m["map"]["values"].as_array().unwrap().len(), h * w);
        let common: f64 = m["common_map"]["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).sum();
        assert_eq!(m["common_map"]["values"].as_array().unwrap().len(), 32 * 32);
        assert!(common > 0.5 && common <= 1.0 + 1e-9, "mass on the common grid: {common}");
        assert!(m["map"]["metrics"]["focus"].is_number());
    }
    let cross = v["cross_model"].as_array().unwrap();
    assert_eq!(cross.len(), 1);
    let js = cross[0]["js_divergence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&js), "{js}");
}
