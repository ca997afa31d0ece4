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

/// `conditions` and `box`: each model answers again under each condition asked for (no map),
/// with its margin and whether the answer is the upload's; the upload's own answer is unchanged.
/// Unknown or study-only conditions, `roi_occluded` without a box, and a box off the image are
/// 400s that say why.
#[actix_web::test]
async fn compare_runs_the_upload_conditions_and_refuses_bad_ones() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let png = std::fs::read(fixture().images.join("00021397_000.png")).unwrap();
    let ask = |fields: Vec<(&'static str, Vec<u8>)>| {
        let mut parts: Vec<(&str, Option<&str>, &[u8])> =
            vec![("image", Some("x.png"), &png), ("question", None, b"Is there a pleural effusion?")];
        parts.extend(fields.iter().map(|(k, v)| (*k, None, v.as_slice())));
        let body = radlens::server::multipart::build("B0und", &parts);
        authed(post("/api/compare"), &state)
            .insert_header(("Content-Type", "multipart/form-data; boundary=B0und"))
            .set_payload(body)
            .to_request()
    };
    let r =
        send(&app, ask(vec![("conditions", b"blank,jpeg90,contrast90,roi_occluded".to_vec()), ("box", b"100,150,200,120".to_vec())])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_no_leak(&r, "compare conditions");
    let v = r.json();
    for m in v["models"].as_array().unwrap() {
        let c = m["conditions"].as_array().unwrap_or_else(|| panic!("{m}"));
        let names: Vec<&str> = c.iter().map(|x| x["condition"].as_str().unwrap()).collect();
        assert_eq!(names, ["blank", "jpeg90", "contrast90", "roi_occluded"]);
        for x in c {
            assert!(x["error"].is_null() && x["parsed_answer"].is_string() && x["yes_no_margin"].is_number(), "{x}");
            assert_eq!(x["same_as_real"].as_bool().unwrap(), x["parsed_answer"] == m["parsed_answer"], "{x}");
            assert!(x.get("map").is_none(), "conditions carry no map");
        }
    }
    for (fields, want) in [
        (vec![("conditions", b"upside_down".to_vec())], "upside_down"),
        (vec![("conditions", b"swap_opposite".to_vec())], "needs a study"),
        (vec![("conditions", b"roi_occluded".to_vec())], "needs the box"),
        (vec![("conditions", b"roi_occluded".to_vec()), ("box", b"400,400,200,200".to_vec())], "not inside the 512x512 image"),
        (vec![("box", b"1,2,0,3".to_vec())], "positive width"),
    ] {
        let r = send(&app, ask(fields.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{fields:?}: {}", r.text());
        assert!(r.text().contains(want), "{fields:?}: {}", r.text());
    }
}
