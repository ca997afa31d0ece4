//! Invariants that hold for every map, checked on random inputs (proptest).

use proptest::prelude::*;
use radlens_shared::fusion::{Fused, HeadFusion, fuse_heads, mean_of};
use radlens_shared::geometry::{PixelBox, resample};
use radlens_shared::map::normalize_vec;
use radlens_shared::metrics::{focus, gini, js_distance, js_divergence, top10_mass};

/// A non-negative vector with positive mass, normalised, with some exact zeros.
fn prob_vec(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![3 => 0.0f64..10.0, 1 => Just(0.0)], len)
        .prop_filter("needs mass", |v| v.iter().sum::<f64>() > 1e-9)
        .prop_map(|v| normalize_vec(&v).unwrap())
}

fn pair(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    len.prop_flat_map(|n| (prob_vec(n..=n), prob_vec(n..=n)))
}

proptest! {
    // Integration tests have no lib.rs beside them for proptest's regression files.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn js_is_symmetric_and_within_unit_interval((p, q) in pair(1..=64)) {
        let d_pq = js_divergence(&p, &q).unwrap();
        let d_qp = js_divergence(&q, &p).unwrap();
        prop_assert!((0.0..=1.0).contains(&d_pq));
        prop_assert!((d_pq - d_qp).abs() < 1e-12);
        let dist = js_distance(&p, &q).unwrap();
        prop_assert!((0.0..=1.0).contains(&dist));
        prop_assert!(js_divergence(&p, &p).unwrap() < 1e-12);
    }

    #[test]
    fn focus_gini_and_top10_stay_in_range(p in prob_vec(1..=600)) {
        let f = focus(&p);
        prop_assert!((-1e-12..=1.0 + 1e-12).contains(&f), "focus {}", f);
        let g = gini(&p);
        prop_assert!((-1e-12..1.0).contains(&g), "gini {}", g);
        let t = top10_mass(&p);
        prop_assert!(t > 0.0 && t <= 1.0 + 1e-12);
    }

    #[test]
    fn fused_maps_sum_to_one(
        heads in (1usize..=8, 1usize..=50).prop_flat_map(|(h, n)| prop::collection::vec(prob_vec(n..=n), h)),
        mode in prop_oneof![Just(HeadFusion::Mean), Just(HeadFusion::Max), Just(HeadFusion::EntropyWeighted)],
    ) {
        let fused = fuse_heads(&heads, mode).unwrap();
        prop_assert!((fused.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        prop_assert!(fused.iter().all(|&v| v >= 0.0));
        let layers: Vec<Fused> = heads.iter().map(|h| Fused { values: h.clone(), image_share: 0.5 }).collect();
        let mean = mean_of(&layers).unwrap();
        prop_assert!((mean.values.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn resampling_a_crop_inside_the_image_preserves_mass(
        (h, w) in (1usize..=40, 1usize..=40),
        (image_w, image_h) in (16u32..=2048, 16u32..=2048),
        (fx0, fy0, fx1, fy1) in (0.0f64..0.5, 0.0f64..0.5, 0.5f64..=1.0, 0.5f64..=1.0),
        g in 1usize..=48,
        seed in any::<u64>(),
    ) {
        let crop = PixelBox::new(fx0 * image_w as f64, fy0 * image_h as f64, fx1 * image_w as f64, fy1 * image_h as f64).unwrap();
        // A cheap deterministic map from the seed (proptest shrinks the seed, not 1600 floats).
        let raw: Vec<f64> = (0..h * w).map(|i| ((seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64).wrapping_mul(1442695040888963407) >> 33) % 1000) as f64 + 1.0).collect();
        let p = normalize_vec(&raw).unwrap();
        let out = resample(&p, h, w, &crop, image_w, image_h, g).unwrap();
        prop_assert_eq!(out.len(), g * g);
        prop_assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
