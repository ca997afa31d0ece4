//! The read API over one run: listing, manifest, analysis, report, records (JSON and CSV),
//! maps, images and plots.

use super::*;

#[actix_web::test]
async fn the_read_api_serves_a_run() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let g = |p: &str| authed(get(p), &state).to_request();

    let m = send(&app, g("/api/runs/demo")).await;
    assert_eq!(m.status, StatusCode::OK);
    let mj = m.json();
    assert!(mj.get("arguments").is_none(), "the command line is not sent");
    assert_eq!(mj["models"].as_array().unwrap().len(), 2);
    assert_no_leak(&m, "manifest");

    let list = send(&app, g("/api/runs")).await.json();
    let demo = &list["runs"][0];
    assert_eq!(demo["id"], "demo");
    assert_eq!(demo["random_weights"], true);
    assert_eq!(demo["models"].as_array().unwrap().len(), 2);
    assert!(demo["rows"].as_u64().unwrap() > 0 && demo["created"].is_string() && demo["updated"].is_string());

    let a = send(&app, g("/api/runs/demo/analysis")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json()["models"].is_array());
    let rep = send(&app, g("/api/runs/demo/report")).await;
    assert_eq!(rep.status, StatusCode::OK);
    assert!(rep.header("Content-Type").starts_with("text/markdown"));
    assert_no_leak(&rep, "report");

    // Records: paging, filters, sort; limit capped.
    let all = send(&app, g("/api/runs/demo/records?limit=100000")).await.json();
    let total = all["total"].as_u64().unwrap() as usize;
    let passes = radlens_shared::record::Pass::ALL.len();
    assert_eq!(total, 2 * 6 * 2 * passes, "2 studies x 6 variants x 2 models x every pass (the image, the blank and six conditions)");
    assert_eq!(all["limit"], 1000);
    let page = send(&app, g("/api/runs/demo/records?offset=5&limit=7")).await.json();
    let recs = page["records"].as_array().unwrap();
    assert_eq!(recs.len(), 7);
    assert_eq!(recs[0]["index"], 5);
    assert_eq!(recs[0]["image_id"].as_str().unwrap().len(), 16);
    let model = all["records"][0]["model"].as_str().unwrap().to_string();
    let one_model = send(&app, g(&format!("/api/runs/demo/records?model={model}&pass=image&limit=1000"))).await.json();
    assert_eq!(one_model["total"], 2 * 6);
    assert!(one_model["records"].as_array().unwrap().iter().all(|r| r["model"] == model.as_str() && r["pass"] == "image"));
    let correct = send(&app, g("/api/runs/demo/records?correct=true&limit=1000")).await.json();
    assert!(correct["records"].as_array().unwrap().iter().all(|r| r["correct"] == true));
    let no_err = send(&app, g("/api/runs/demo/records?error=false")).await.json();
    assert_eq!(no_err["total"], total, "the demo has no error records");
    let q = send(&app, g("/api/runs/demo/records?q=EFFUSION&limit=1000")).await.json();
    assert!(q["total"].as_u64().unwrap() > 0);
    assert!(q["records"].as_array().unwrap().iter().all(|r| r.to_string().to_lowercase().contains("effusion")));
    let sorted = send(&app, g("/api/runs/demo/records?sort=-margin&pass=image&limit=1000")).await.json();
    let margins: Vec<f64> = sorted["records"].as_array().unwrap().iter().filter_map(|r| r["yes_no_margin"].as_f64()).collect();
    assert!(margins.windows(2).all(|w| w[0] >= w[1]), "{margins:?}");
    for bad in ["sort=nope", "correct=maybe", "limit=-1", "offset=x", "pass=other", "beats_controls=maybe", "null_edit_moves=maybe"] {
        let r = send(&app, g(&format!("/api/runs/demo/records?{bad}"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json()["error"].is_string(), "{bad}");
    }

    // One record, its map as JSON and binary, its head rows.
    let rec = send(&app, g("/api/runs/demo/records/3")).await.json();
    assert_eq!(rec["index"], 3);
    let map = send(&app, g("/api/runs/demo/records/3/map")).await.json();
    let (h, w) = (map["h"].as_u64().unwrap() as usize, map["w"].as_u64().unwrap() as usize);
    assert_eq!(map["values"].as_array().unwrap().len(), h * w);
    assert!(map["provenance"].is_object() && map["image_share"].is_number());
    let bin = send(&app, g("/api/runs/demo/records/3/map.bin")).await;
    assert_eq!(bin.header("X-Shape"), format!("{h},{w}"));
    assert_eq!(bin.body.len(), h * w * 4);
    let first = f32::from_le_bytes(bin.body[..4].try_into().unwrap());
    assert!((f64::from(first) - map["values"][0].as_f64().unwrap()).abs() < 1e-6);
    let rows = send(&app, g("/api/runs/demo/records/3/rows.bin")).await;
    let shape: Vec<usize> = rows.header("X-Shape").split(',').map(|d| d.parse().unwrap()).collect();
    assert_eq!(shape.len(), 4);
    assert_eq!(rows.body.len(), shape.iter().product::<usize>() * 4);

    // Maps by every method of an image-pass record (the demo run makes Grad-CAM and relative
    // maps on the grid of its attention map, and the occlusion map on the 4 x 4 occlusion grid);
    // an unknown method is a 404.
    let image_rec = &one_model["records"][0];
    let i = image_rec["index"].as_u64().unwrap();
    assert_eq!(image_rec["trust"]["maps"].as_array().unwrap().len(), 3, "{}", image_rec["trust"]);
    let grid = |p: &serde_json::Value| (p["geometry"]["h"].as_u64().unwrap(), p["geometry"]["w"].as_u64().unwrap());
    let attention_grid = grid(&image_rec["map"]["provenance"]);
    for method in ["query_to_visual", "gradcam", "relative", "occlusion"] {
        let (ah, aw) = if method == "occlusion" { (4, 4) } else { attention_grid };
        let m = send(&app, g(&format!("/api/runs/demo/records/{i}/maps/{method}"))).await;
        assert_eq!(m.status, StatusCode::OK, "{method}: {}", m.text());
        let mj = m.json();
        assert_eq!(mj["provenance"]["method"], method);
        assert_eq!((mj["h"].as_u64(), mj["w"].as_u64()), (Some(ah), Some(aw)), "{method}");
        assert_eq!(mj["values"].as_array().unwrap().len() as u64, ah * aw, "{method}");
        assert!(mj["metrics"]["focus"].is_number());
    }
    for bad in ["uniform_fallback", "nope", "..%2F..%2Fsecret.txt"] {
        let r = send(&app, g(&format!("/api/runs/demo/records/{i}/maps/{bad}"))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
        assert_no_leak(&r, "method map");
    }
    // A single-image record has no per-image maps (issue 21): any image of it is a 404.
    for k in ["0", "1", "x"] {
        let r = send(&app, g(&format!("/api/runs/demo/records/{i}/images/{k}/maps/query_to_visual"))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "image {k}: {}", r.text());
        assert_no_leak(&r, "image map");
    }

    // The record's image by its opaque id: PNG, at most 512 px, no metadata chunks.
    let img = send(&app, g(&format!("/api/runs/demo/images/{}", rec["image_id"].as_str().unwrap()))).await;
    assert_eq!(img.status, StatusCode::OK, "{}", img.text());
    assert_eq!(img.header("Content-Type"), "image/png");
    let decoded = image::load_from_memory(&img.body).unwrap();
    assert!(decoded.width() <= 512 && decoded.height() <= 512);
    for chunk in [&b"tEXt"[..], b"iTXt", b"zTXt", b"eXIf"] {
        assert!(!img.body.windows(4).any(|w| w == chunk), "metadata chunk {:?}", std::str::from_utf8(chunk));
    }

    // Plots by listing.
    let plots = send(&app, g("/api/runs/demo/plots")).await.json();
    let names = plots["plots"].as_array().unwrap();
    assert!(!names.is_empty());
    let p = send(&app, g(&format!("/api/runs/demo/plots/{}", names[0].as_str().unwrap()))).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.starts_with(b"\x89PNG"));

    // CSV of a view (every page, in the query's order): the dashboard's "Download CSV" of that
    // view byte for byte (the shared header and writer), each row the record's `records.csv`
    // row between its run index and its derived views.
    let run_dir = fixture().runs.join("demo");
    let records = radlens::study::run_dir::RunDir::open(&run_dir).unwrap().read_records().unwrap();
    let csv = send(&app, g(&format!("/api/runs/demo/records.csv?model={model}&sort=-margin"))).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header("Content-Type").starts_with("text/csv"));
    assert_eq!(csv.header("Content-Disposition"), "attachment; filename=\"demo-records.csv\"");
    let text = csv.text();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, radlens_shared::records_csv::view_header());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // The same filter and order, worked out here from records.jsonl: margins descending,
    // missing margins last, ties in run order.
    let filter = radlens_shared::filter::RecordFilter { model: Some(model.clone()), ..Default::default() };
    let facts = crate::support::run_facts(&run_dir, &records);
    let mut want: Vec<usize> = (0..records.len()).filter(|&i| filter.matches(&records[i], &facts)).collect();
    want.sort_by(|&a, &b| match (records[a].yes_no_margin, records[b].yes_no_margin) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (x, y) => y.is_some().cmp(&x.is_some()),
    });
    assert_eq!(want.len(), 2 * 6 * radlens_shared::record::Pass::ALL.len(), "every page of the filtered view");
    let got: Vec<usize> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(got, want);
    // records.csv is in the analysis' order: rows join on (sample_id, model, pass).
    let stored: std::collections::HashMap<(String, String, String), csv::StringRecord> =
        csv::Reader::from_path(run_dir.join("records.csv"))
            .unwrap()
            .records()
            .map(|r| {
                let r = r.unwrap();
                ((r[0].to_owned(), r[7].to_owned(), r[8].to_owned()), r)
            })
            .collect();
    let n = radlens_shared::records_csv::COLUMNS.len();
    for r in &rows {
        let stored = &stored[&(r[1].to_owned(), r[8].to_owned(), r[9].to_owned())];
        assert_eq!(r.iter().skip(1).take(n).collect::<Vec<_>>(), stored.iter().collect::<Vec<_>>(), "record {}", &r[0]);
        assert!(["true", "false"].contains(&&r[n + 1]) && ["true", "false"].contains(&&r[n + 2]), "{r:?}");
    }
    let derived = radlens_shared::views::Derived::of(&records);
    assert_eq!(text, radlens_shared::records_csv::view_csv(&records, |i| i, &derived, &want), "the dashboard's download of this view");
    assert_no_leak(&csv, "csv");
    // The derived views filter as in the dashboard: `flipped=true` keeps exactly the rows the
    // unfiltered CSV marks flipped.
    let all_rows: Vec<csv::StringRecord> =
        csv::Reader::from_reader(send(&app, g("/api/runs/demo/records.csv")).await.body.as_ref()).records().map(Result::unwrap).collect();
    assert_eq!(all_rows.len(), records.len());
    let marked: Vec<&str> = all_rows.iter().filter(|r| &r[n + 1] == "true").map(|r| r.get(0).unwrap()).collect();
    let flipped = send(&app, g("/api/runs/demo/records.csv?flipped=true")).await;
    let flipped: Vec<csv::StringRecord> = csv::Reader::from_reader(flipped.body.as_ref()).records().map(Result::unwrap).collect();
    assert_eq!(flipped.iter().map(|r| r.get(0).unwrap()).collect::<Vec<_>>(), marked);

    // The grounding filters as in the dashboard (the same shared code over the same values):
    // `beats_controls=` by the own map's G2 ROI percentile (records without box controls match
    // neither), `null_edit_moves=` by the study's G4 verdict from the stored maps.
    let rows_of =
        |body: &[u8]| -> Vec<usize> { csv::Reader::from_reader(body).records().map(|r| r.unwrap()[0].parse().unwrap()).collect() };
    let beats: Vec<Option<bool>> = records.iter().map(radlens_shared::filter::beats_controls).collect();
    assert!(beats.iter().any(Option::is_some), "the demo run boxes a study: some record has box controls");
    assert!(beats.iter().any(Option::is_none), "and some records have none");
    let dir = radlens::study::run_dir::RunDir::open(&run_dir).unwrap();
    let maps: std::collections::HashMap<usize, radlens_shared::AttentionMap> = radlens_shared::views::null_edit_maps_needed(&records)
        .into_iter()
        .map(|i| {
            let m = records[i].map.as_ref().unwrap();
            let values = dir.read_f32(&m.values).unwrap().into_iter().map(radlens_shared::api::as_sent).collect();
            (i, radlens_shared::AttentionMap::new(m.provenance.geometry.h, m.provenance.geometry.w, values).unwrap())
        })
        .collect();
    let nulls = radlens_shared::views::NullEditFlags::of(&records, |i| maps.get(&i)).unwrap();
    for want in [true, false] {
        let got = rows_of(&send(&app, g(&format!("/api/runs/demo/records.csv?beats_controls={want}"))).await.body);
        assert_eq!(got, (0..records.len()).filter(|&i| beats[i] == Some(want)).collect::<Vec<_>>(), "beats_controls={want}");
        let got = rows_of(&send(&app, g(&format!("/api/runs/demo/records.csv?null_edit_moves={want}"))).await.body);
        assert_eq!(got, (0..records.len()).filter(|&i| nulls.flag(i) == Some(want)).collect::<Vec<_>>(), "null_edit_moves={want}");
        let page = send(&app, g(&format!("/api/runs/demo/records?null_edit_moves={want}&beats_controls={want}&limit=1000"))).await.json();
        let both = (0..records.len()).filter(|&i| nulls.flag(i) == Some(want) && beats[i] == Some(want)).count();
        assert_eq!(page["total"].as_u64(), Some(both as u64), "both grounding filters on the records page");
    }

    // The image-condition filters as in the dashboard: `pass=` any pass of the run; `near_tie=`
    // image-pass records with |margin| < the manifest's eps; `blank_same=` image-pass records
    // whose blank record (same sample and model) gave the same parsed answer. Worked out here
    // from records.jsonl without the shared filter.
    let eps = dir.read_manifest().unwrap().near_tie_eps();
    assert_eq!(list["runs"][0]["near_tie_eps"].as_f64(), Some(eps), "the runs list carries the near-tie threshold");
    for pass in radlens_shared::record::Pass::ALL {
        let got = rows_of(&send(&app, g(&format!("/api/runs/demo/records.csv?pass={}", pass.name()))).await.body);
        let want: Vec<usize> = (0..records.len()).filter(|&i| records[i].pass == pass).collect();
        assert!(!want.is_empty(), "the demo run has {} records", pass.name());
        assert_eq!(got, want, "pass={}", pass.name());
    }
    let image = |i: usize| records[i].pass == radlens_shared::record::Pass::Image;
    let tie = |i: usize| image(i).then_some(records[i].yes_no_margin).flatten().map(|m| m.abs() < eps);
    let blank_of = |i: usize| {
        records.iter().find(|b| {
            b.pass == radlens_shared::record::Pass::BlankImage && b.sample_id == records[i].sample_id && b.model == records[i].model
        })
    };
    let same = |i: usize| match (image(i), records[i].parsed_answer, blank_of(i).and_then(|b| b.parsed_answer)) {
        (true, Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    for want in [true, false] {
        let got = rows_of(&send(&app, g(&format!("/api/runs/demo/records.csv?near_tie={want}"))).await.body);
        assert_eq!(got, (0..records.len()).filter(|&i| tie(i) == Some(want)).collect::<Vec<_>>(), "near_tie={want}");
        let got = rows_of(&send(&app, g(&format!("/api/runs/demo/records.csv?blank_same={want}"))).await.body);
        assert_eq!(got, (0..records.len()).filter(|&i| same(i) == Some(want)).collect::<Vec<_>>(), "blank_same={want}");
    }
    assert!((0..records.len()).any(|i| same(i).is_some()), "image records with a blank answer to compare");
    for bad in ["near_tie=maybe", "blank_same=1"] {
        assert_eq!(send(&app, g(&format!("/api/runs/demo/records?{bad}"))).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // Out of range and missing.
    for p in &[
        &format!("/api/runs/demo/records/{}", records.len()),
        "/api/runs/demo/records/999999",
        "/api/runs/nope",
        "/api/runs/demo/images/0000000000000000",
        "/api/runs/demo/plots/nope.png",
    ] {
        let r = send(&app, g(p)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert_eq!(r.json()["error"], "not_found", "{p}");
    }
    // Unknown methods get a JSON 405, unknown API routes a JSON 404.
    let r = send(&app, authed(TestRequest::delete().uri("/api/runs/demo").insert_header(("Host", HOST)), &state).to_request()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(send(&app, g("/api/nothing")).await.json()["error"], "not_found");
}
