//! Every geometry function that Qwen2.5-VL's per-image grids reach, on a non-square grid over a
//! non-square crop, against a brute-force reference written here (rows and columns swapped
//! would fail each of them): the cell mask, the area resampling (common grid and re-gridding),
//! the box controls and the box score, the occlusion re-gridding and agreement, and the confound
//! mass.

use radlens_shared::AttentionMap;
use radlens_shared::geometry::{MapGeometry, PixelBox, bbox_mask, resample, resample_to_rect};
use radlens_shared::grounding::{box_controls, box_score, confound_mass, occlusion_agreement, resample_to_occlusion_grid};

/// A 3-row x 5-column map over a 300 x 180 (W x H) crop of a 320 x 200 image: cells of 60 x 60
/// pixels, offset by (10, 10).
const H: usize = 3;
const W: usize = 5;

fn crop() -> PixelBox {
    PixelBox { x0: 10.0, y0: 10.0, x1: 310.0, y1: 190.0 }
}

fn geometry() -> MapGeometry {
    MapGeometry { h: H, w: W, crop: crop(), image_w: 320, image_h: 200 }
}

/// Distinct values, so a transposed or mirrored reading gives other numbers.
fn map() -> AttentionMap {
    AttentionMap::new(H, W, (0..H * W).map(|i| 1.0 + i as f64 * (1.0 + (i % 3) as f64)).collect()).unwrap()
}

/// Cell `(r, c)`'s rectangle in image pixels.
fn cell(r: usize, c: usize) -> PixelBox {
    PixelBox { x0: 10.0 + 60.0 * c as f64, y0: 10.0 + 60.0 * r as f64, x1: 70.0 + 60.0 * c as f64, y1: 70.0 + 60.0 * r as f64 }
}

fn overlap(a: &PixelBox, b: &PixelBox) -> f64 {
    ((a.x1.min(b.x1) - a.x0.max(b.x0)).max(0.0)) * ((a.y1.min(b.y1) - a.y0.max(b.y0)).max(0.0))
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-12, "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn the_cell_mask_takes_cells_whose_centre_is_in_the_box_row_major() {
    // Centres at x = 40, 100, 160, 220, 280 and y = 40, 100, 160.
    let b = PixelBox { x0: 90.0, y0: 30.0, x1: 230.0, y1: 110.0 };
    let mask = bbox_mask(H, W, &crop(), &b);
    let want: Vec<bool> = (0..H).flat_map(|r| (0..W).map(move |c| (1..=3).contains(&c) && r <= 1)).collect();
    assert_eq!(mask, want);
}

#[test]
fn resampling_spreads_each_cell_by_overlap_area_on_both_axes() {
    let m = map();
    let p = m.normalized().unwrap();
    // Onto a 4 x 4 grid over the whole 320 x 200 image (cells of 80 x 50).
    let got = resample(&p, H, W, &crop(), 320, 200, 4).unwrap();
    let mut want = vec![0.0; 16];
    for (t, slot) in want.iter_mut().enumerate() {
        let (tr, tc) = (t / 4, t % 4);
        let target = PixelBox { x0: 80.0 * tc as f64, y0: 50.0 * tr as f64, x1: 80.0 * (tc + 1) as f64, y1: 50.0 * (tr + 1) as f64 };
        for r in 0..H {
            for c in 0..W {
                *slot += p[r * W + c] * overlap(&cell(r, c), &target) / 3600.0;
            }
        }
    }
    close("resample", &got, &want);
    assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-12, "mass kept: the crop is inside the image");

    // Re-gridding over a non-square target (2 rows x 3 columns over the crop's left part).
    let target = PixelBox { x0: 10.0, y0: 10.0, x1: 190.0, y1: 190.0 };
    let got = resample_to_rect(&p, H, W, &crop(), &target, 2, 3).unwrap();
    let mut want = vec![0.0; 6];
    for (t, slot) in want.iter_mut().enumerate() {
        let (tr, tc) = (t / 3, t % 3);
        let cellt = PixelBox {
            x0: 10.0 + 60.0 * tc as f64,
            y0: 10.0 + 90.0 * tr as f64,
            x1: 70.0 + 60.0 * tc as f64,
            y1: 100.0 + 90.0 * tr as f64,
        };
        for r in 0..H {
            for c in 0..W {
                *slot += p[r * W + c] * overlap(&cell(r, c), &cellt) / 3600.0;
            }
        }
    }
    close("resample_to_rect", &got, &want);
}

#[test]
fn box_controls_and_box_score_read_rows_and_columns_apart() {
    let m = map();
    let p = m.normalized().unwrap();
    // Holds the centres of cells (0, 3) and (0, 4) only.
    let roi = PixelBox { x0: 200.0, y0: 20.0, x1: 300.0, y1: 60.0 };
    let c = box_controls(&m, &geometry(), &roi).unwrap();
    assert!((c.mass.unwrap() - (p[3] + p[4])).abs() < 1e-12, "{c:?}");
    // The mirror about x = 160: (20, 20)-(120, 60), the centres of (0, 0) and (0, 1).
    assert_eq!(c.mirror_box, PixelBox { x0: 20.0, y0: 20.0, x1: 120.0, y1: 60.0 });
    assert!((c.mirror_mass.unwrap() - (p[0] + p[1])).abs() < 1e-12);
    assert!(c.n_controls > 0);

    // The box score: the top-decile cells (2 of 15: cells (2, 4) and (2, 1), the two largest) as
    // boxes, each at its own row and column.
    let mut order: Vec<usize> = (0..H * W).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    assert_eq!(order[..2].iter().map(|&i| (i / W, i % W)).collect::<Vec<_>>(), [(2, 4), (2, 1)]);
    let exact = box_score(&m, &crop(), &[cell(2, 4), cell(2, 1)]).unwrap();
    assert!((exact.box_iou - 1.0).abs() < 1e-9, "{exact:?}");
    let elsewhere = box_score(&m, &crop(), &[cell(1, 2)]).unwrap();
    assert!(elsewhere.box_iou.abs() < 1e-9, "(2, 1) with its row and column swapped is not found: {elsewhere:?}");
}

#[test]
fn occlusion_regridding_and_agreement_work_on_a_non_square_map() {
    let m = map();
    let p = m.normalized().unwrap();
    // The occlusion grid is g x g over the same crop: cells of 150 x 90 for g = 2.
    let got = resample_to_occlusion_grid(&m, &crop(), 2).unwrap();
    let mut want = vec![0.0; 4];
    for (t, slot) in want.iter_mut().enumerate() {
        let (tr, tc) = (t / 2, t % 2);
        let target = PixelBox {
            x0: 10.0 + 150.0 * tc as f64,
            y0: 10.0 + 90.0 * tr as f64,
            x1: 160.0 + 150.0 * tc as f64,
            y1: 100.0 + 90.0 * tr as f64,
        };
        for r in 0..H {
            for c in 0..W {
                *slot += p[r * W + c] * overlap(&cell(r, c), &target) / 3600.0;
            }
        }
    }
    close("resample_to_occlusion_grid", &got, &want);
    // A support equal to the re-gridded map agrees perfectly with it.
    let a = occlusion_agreement(&m, &crop(), &want, 28, 2).unwrap();
    assert!((a.occlusion_spearman.unwrap() - 1.0).abs() < 1e-12, "{a:?}");
}

#[test]
fn the_confound_mass_counts_the_overlapped_cells_of_a_non_square_grid() {
    let m = map();
    let p = m.normalized().unwrap();
    // Overlaps columns 3 and 4 of row 1 only (x 240..290 across the border at 250, y 75..125).
    let tag = PixelBox { x0: 240.0, y0: 75.0, x1: 290.0, y1: 125.0 };
    let c = confound_mass(&m, &geometry(), &tag).unwrap().unwrap();
    assert_eq!(c.cells, 2);
    assert!((c.mass - (p[W + 3] + p[W + 4])).abs() < 1e-12);
    assert!((c.uniform - 2.0 / 15.0).abs() < 1e-12);
}
