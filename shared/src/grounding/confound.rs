//! A confound box: a region the study CSV names as a known shortcut (a burned-in laterality tag,
//! a chest tube, a hospital's corner marker), not the finding. radlens' own check beyond the
//! spec: how much of a map's mass lies on it, and (as the image condition `confound_occluded`)
//! whether hiding it changes the answer.
//!
//! Shortcut marks are small, often smaller than one cell of a model's map (a 28 px tag on a
//! 4 x 4 grid over 512 px), so the G2 rule "cells whose centre is in the box" would often find no
//! cell at all. Here a cell counts when its rectangle overlaps the box with positive area, and
//! the mass is read against `uniform`, the share those cells hold under a flat map.

use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::geometry::{MapGeometry, PixelBox};
use crate::map::AttentionMap;

/// A map's mass on the cells a confound box overlaps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfoundMass {
    /// Cells whose rectangle overlaps the box (positive area).
    pub cells: usize,
    /// The normalised map's mass on them.
    pub mass: f64,
    /// `cells / (h w)`: their mass under a flat map.
    pub uniform: f64,
}

impl ConfoundMass {
    /// `mass - uniform`: above 0, the map looks at the confound more than a flat map would.
    pub fn excess(&self) -> f64 {
        self.mass - self.uniform
    }
}

/// The mass of `map` (over `geometry`) on the cells `confound` overlaps. `None` when the box
/// overlaps no cell of the crop (it lies in a part of the image the model did not see).
pub fn confound_mass(map: &AttentionMap, geometry: &MapGeometry, confound: &PixelBox) -> Result<Option<ConfoundMass>, MetricError> {
    if (map.h, map.w) != (geometry.h, geometry.w) {
        return Err(MetricError::GridsDiffer { a_h: map.h, a_w: map.w, b_h: geometry.h, b_w: geometry.w });
    }
    let c = &geometry.crop;
    PixelBox::new(c.x0, c.y0, c.x1, c.y1)?;
    let b = PixelBox::new(confound.x0, confound.y0, confound.x1, confound.y1)?;
    let p = map.normalized()?;
    // Cell k along an axis spans [start + k step, start + (k + 1) step).
    let span = |start: f64, end: f64, n: usize, lo: f64, hi: f64| -> std::ops::Range<usize> {
        let step = (end - start) / n as f64;
        let first = (0..n).find(|&k| start + (k + 1) as f64 * step > lo);
        let last = (0..n).rev().find(|&k| start + k as f64 * step < hi);
        match (first, last) {
            (Some(a), Some(z)) if a <= z => a..z + 1,
            _ => 0..0,
        }
    };
    let rows = span(c.y0, c.y1, geometry.h, b.y0, b.y1);
    let cols = span(c.x0, c.x1, geometry.w, b.x0, b.x1);
    let cells = rows.len() * cols.len();
    if cells == 0 {
        return Ok(None);
    }
    let mass = rows.flat_map(|r| cols.clone().map(move |col| r * geometry.w + col)).map(|i| p[i]).sum();
    Ok(Some(ConfoundMass { cells, mass, uniform: cells as f64 / (geometry.h * geometry.w) as f64 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(h: usize, w: usize) -> MapGeometry {
        MapGeometry { h, w, crop: PixelBox { x0: 0.0, y0: 0.0, x1: 512.0, y1: 512.0 }, image_w: 512, image_h: 512 }
    }

    #[test]
    fn a_mark_smaller_than_a_cell_counts_the_cell_it_sits_in() {
        // A 28 px tag in the top-right corner of a 4 x 4 grid (cells of 128 px): no cell centre
        // lies in it, yet cell (0, 3) holds it.
        let mut values = vec![1.0; 16];
        values[3] = 5.0;
        let map = AttentionMap::new(4, 4, values).unwrap();
        let tag = PixelBox { x0: 460.0, y0: 20.0, x1: 488.0, y1: 48.0 };
        let m = confound_mass(&map, &geometry(4, 4), &tag).unwrap().unwrap();
        assert_eq!(m.cells, 1);
        assert!((m.mass - 5.0 / 20.0).abs() < 1e-12);
        assert!((m.uniform - 1.0 / 16.0).abs() < 1e-12);
        assert!(m.excess() > 0.0);
    }

    #[test]
    fn a_box_across_a_cell_border_counts_both_cells_and_touching_is_not_overlapping() {
        let map = AttentionMap::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let across = PixelBox { x0: 200.0, y0: 10.0, x1: 300.0, y1: 20.0 };
        let m = confound_mass(&map, &geometry(2, 2), &across).unwrap().unwrap();
        assert_eq!(m.cells, 2);
        assert!((m.mass - 0.3).abs() < 1e-12);
        // Ends exactly on the border at 256: only the left cell.
        let touching = PixelBox { x0: 200.0, y0: 10.0, x1: 256.0, y1: 20.0 };
        assert_eq!(confound_mass(&map, &geometry(2, 2), &touching).unwrap().unwrap().cells, 1);
    }

    #[test]
    fn a_box_outside_the_crop_has_no_cells_and_a_bad_box_is_an_error() {
        let map = AttentionMap::new(2, 2, vec![1.0; 4]).unwrap();
        let mut g = geometry(2, 2);
        g.crop = PixelBox { x0: 64.0, y0: 0.0, x1: 448.0, y1: 512.0 };
        let outside = PixelBox { x0: 470.0, y0: 10.0, x1: 500.0, y1: 40.0 };
        assert_eq!(confound_mass(&map, &g, &outside).unwrap(), None);
        let inverted = PixelBox { x0: 10.0, y0: 10.0, x1: 5.0, y1: 40.0 };
        assert!(confound_mass(&map, &g, &inverted).is_err());
        let other_grid = AttentionMap::new(3, 3, vec![1.0; 9]).unwrap();
        assert!(confound_mass(&other_grid, &g, &outside).is_err());
    }
}
