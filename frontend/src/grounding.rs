//! View model of the study view's grounding panel (`fixtures/spec/grounding.md` G1-G4): how far
//! to trust each of a record's maps, as the run stored it, with what every number means, and
//! the boxes of G2 (the radiologist box, its mirror, the control boxes) to draw on the overlay.
//! Pure Rust; the panel itself is `pages::grounding_panel` (wasm32).
//!
//! Every figure's name and meaning is in [`Figure::info`], the one table the panel's hover
//! titles and the explorer's filter titles read.

use radlens_shared::MetricError;
use radlens_shared::fusion::MapMethod;
use radlens_shared::geometry::{MapGeometry, PixelBox};
use radlens_shared::grounding::{GroundingRecord, NullEditRecord, NullEditStudy, control_boxes, mirror_box};

/// A grounding figure the dashboard shows (or filters on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Figure {
    OcclusionSpearman,
    OcclusionTopkOverlap,
    OcclusionSupportMass,
    BoxMass,
    MirrorMass,
    NControls,
    ControlMassMean,
    RoiLift,
    RoiPercentile,
    PointingGame,
    ControlPointingMean,
    BoxIou,
    BoxPrecision,
    BoxRecall,
    BoxF1,
    NullAnswerEqual,
    NullMarginDelta,
    NullJsDistance,
    ParaphraseJs,
    StudyNullJs,
    ParaphraseToNull,
    NullEditFlag,
    BeatsControlsFilter,
    NullEditFilter,
    ControlBoxesToggle,
}

impl Figure {
    /// The per-map rows of the panel's table, in order (G1, G2, G3).
    pub const MAP_ROWS: [Figure; 15] = [
        Figure::OcclusionSpearman,
        Figure::OcclusionTopkOverlap,
        Figure::OcclusionSupportMass,
        Figure::BoxMass,
        Figure::MirrorMass,
        Figure::NControls,
        Figure::ControlMassMean,
        Figure::RoiLift,
        Figure::RoiPercentile,
        Figure::PointingGame,
        Figure::ControlPointingMean,
        Figure::BoxIou,
        Figure::BoxPrecision,
        Figure::BoxRecall,
        Figure::BoxF1,
    ];

    /// Every figure, for checks over the whole table.
    pub const ALL: [Figure; 25] = [
        Figure::OcclusionSpearman,
        Figure::OcclusionTopkOverlap,
        Figure::OcclusionSupportMass,
        Figure::BoxMass,
        Figure::MirrorMass,
        Figure::NControls,
        Figure::ControlMassMean,
        Figure::RoiLift,
        Figure::RoiPercentile,
        Figure::PointingGame,
        Figure::ControlPointingMean,
        Figure::BoxIou,
        Figure::BoxPrecision,
        Figure::BoxRecall,
        Figure::BoxF1,
        Figure::NullAnswerEqual,
        Figure::NullMarginDelta,
        Figure::NullJsDistance,
        Figure::ParaphraseJs,
        Figure::StudyNullJs,
        Figure::ParaphraseToNull,
        Figure::NullEditFlag,
        Figure::BeatsControlsFilter,
        Figure::NullEditFilter,
        Figure::ControlBoxesToggle,
    ];

    /// `(key, label, meaning)`: the key names the figure in the page (`data-figure`), the label
    /// heads its row, the meaning is its hover title (one line).
    pub fn info(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Figure::OcclusionSpearman => (
                "occlusion_spearman",
                "occlusion Spearman",
                "Spearman's rho between this map (resampled onto the occlusion grid) and the occlusion support: 1 = it ranks cells as hiding them weakens the answer, 0 = unrelated (G1).",
            ),
            Figure::OcclusionTopkOverlap => (
                "occlusion_topk_overlap",
                "top-10% overlap",
                "Share of this map's top 10% cells that are also among the top 10% cells of the occlusion support (G1); chance is about 0.1.",
            ),
            Figure::OcclusionSupportMass => (
                "occlusion_support_mass",
                "support mass",
                "Share of this map's mass on cells whose occlusion weakens the model's own answer (support > 0) (G1).",
            ),
            Figure::BoxMass => ("mass", "box mass", "Share of this map's mass inside the radiologist box (G2)."),
            Figure::MirrorMass => (
                "mirror_mass",
                "mirror mass",
                "Share of this map's mass in the radiologist box mirrored to the other side of the chest (G2); near the box mass, the map does not tell the sides apart.",
            ),
            Figure::NControls => (
                "n_controls",
                "control boxes",
                "Number of boxes of the radiologist box's size, inside the region the model saw and not overlapping it, that the box is compared with (G2).",
            ),
            Figure::ControlMassMean => {
                ("control_mass_mean", "control mass (mean)", "Mean share of this map's mass in one control box (G2).")
            }
            Figure::RoiLift => (
                "roi_lift",
                "ROI lift",
                "Box mass minus the mean control-box mass (G2): above 0, the map favours the finding's box over same-size boxes elsewhere.",
            ),
            Figure::RoiPercentile => (
                "roi_percentile",
                "ROI percentile",
                "Share of control boxes holding less mass than the radiologist box, ties counting half (G2); at 0.95 or more the map beats its controls.",
            ),
            Figure::PointingGame => {
                ("pointing_game", "pointing game", "1 when this map's hottest cell lies in the radiologist box, else 0 (G2).")
            }
            Figure::ControlPointingMean => (
                "control_pointing_mean",
                "control pointing (mean)",
                "Mean pointing game over the control boxes: the chance level of this map's own pointing game (G2).",
            ),
            Figure::BoxIou => (
                "box_iou",
                "box IoU",
                "Intersection over union of the boxes around the map's hottest regions (top 10% of cells, up to 10 components) and the radiologist box (G3).",
            ),
            Figure::BoxPrecision => {
                ("box_precision", "box precision", "Share of the predicted boxes' area that lies in the radiologist box (G3).")
            }
            Figure::BoxRecall => ("box_recall", "box recall", "Share of the radiologist box's area covered by the predicted boxes (G3)."),
            Figure::BoxF1 => ("box_f1", "box F1", "Harmonic mean of box precision and box recall (G3), the MedGround-Bench score."),
            Figure::NullAnswerEqual => (
                "answer_equal",
                "answer equal",
                "Whether the model gives the same answer on the edited image, where nothing meaningful changed (G4).",
            ),
            Figure::NullMarginDelta => (
                "margin_delta",
                "margin Δ",
                "Change of the yes-minus-no logit margin under the edit, m_edit - m (G4); near 0 for a stable decision.",
            ),
            Figure::NullJsDistance => (
                "js_distance",
                "map JS distance",
                "JS distance (bits, 0-1) between this map and the map of the edited image: how far the map moved though nothing meaningful changed (G4).",
            ),
            Figure::ParaphraseJs => (
                "paraphrase_js",
                "paraphrase JS",
                "Mean JS distance (bits) between the base question's map and each reworded question's map, this study and model (G4).",
            ),
            Figure::StudyNullJs => (
                "null_js",
                "null JS",
                "Mean JS distance (bits) between each variant's map and its map under this edit, this study and model (G4).",
            ),
            Figure::ParaphraseToNull => (
                "paraphrase_to_null",
                "paraphrase-to-null",
                "Paraphrase JS / null JS (G4): below 1, the maps move more under a meaningless image edit than under rewording the question.",
            ),
            Figure::NullEditFlag => (
                "null_edit_flag",
                "verdict",
                "Flagged when the paraphrase-to-null ratio is below 1: the map reacts more to image noise than to the question (G4).",
            ),
            Figure::BeatsControlsFilter => (
                "beats_controls",
                "map beats controls",
                "Records whose own map has an ROI percentile of at least 0.95 against its control boxes (G2); records without a box match neither yes nor no.",
            ),
            Figure::NullEditFilter => (
                "null_edit_moves",
                "map moves more under a null edit than under rewording",
                "Records of studies whose maps (per model) have a paraphrase-to-null ratio below 1 for some null edit (G4); studies without the comparison match neither yes nor no.",
            ),
            Figure::ControlBoxesToggle => (
                "boxes",
                "control boxes",
                "Draws the radiologist box, its mirror and the G2 control boxes (enumerated by the shared code on the shown map's grid) on every overlay.",
            ),
        }
    }

    pub fn key(self) -> &'static str {
        self.info().0
    }

    pub fn label(self) -> &'static str {
        self.info().1
    }
}

/// The hover title of a figure.
pub fn meaning(f: Figure) -> &'static str {
    f.info().2
}

/// A figure's value, formatted, with its raw number for tests (`None` where the spec says null
/// or the run did not compute it).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub raw: Option<f64>,
}

impl Cell {
    fn num(v: Option<f64>) -> Self {
        Self { text: v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into()), raw: v }
    }

    fn signed(v: Option<f64>) -> Self {
        Self { text: v.map(|v| format!("{v:+.3}")).unwrap_or_else(|| "—".into()), raw: v }
    }

    fn count(n: usize) -> Self {
        Self { text: n.to_string(), raw: Some(n as f64) }
    }

    fn absent() -> Self {
        Self { text: "—".into(), raw: None }
    }
}

/// The value of one per-map figure ([`Figure::MAP_ROWS`]) of a method's grounding: absent when
/// that part was not computed (no occlusion, no box).
pub fn map_cell(g: &GroundingRecord, f: Figure) -> Cell {
    let occ = g.occlusion.as_ref();
    let bc = g.box_controls.as_ref();
    let bs = g.box_score.as_ref();
    match f {
        Figure::OcclusionSpearman => occ.map_or_else(Cell::absent, |o| Cell::num(o.occlusion_spearman)),
        Figure::OcclusionTopkOverlap => occ.map_or_else(Cell::absent, |o| Cell::num(Some(o.occlusion_topk_overlap))),
        Figure::OcclusionSupportMass => occ.map_or_else(Cell::absent, |o| Cell::num(o.occlusion_support_mass)),
        Figure::BoxMass => bc.map_or_else(Cell::absent, |b| Cell::num(b.mass)),
        Figure::MirrorMass => bc.map_or_else(Cell::absent, |b| Cell::num(b.mirror_mass)),
        Figure::NControls => bc.map_or_else(Cell::absent, |b| Cell::count(b.n_controls)),
        Figure::ControlMassMean => bc.map_or_else(Cell::absent, |b| Cell::num(b.control_mass_mean)),
        Figure::RoiLift => bc.map_or_else(Cell::absent, |b| Cell::signed(b.roi_lift)),
        Figure::RoiPercentile => bc.map_or_else(Cell::absent, |b| Cell::num(b.roi_percentile)),
        Figure::PointingGame => bc.map_or_else(Cell::absent, |b| Cell::num(b.pointing_game)),
        Figure::ControlPointingMean => bc.map_or_else(Cell::absent, |b| Cell::num(b.control_pointing_mean)),
        Figure::BoxIou => bs.map_or_else(Cell::absent, |b| Cell::num(Some(b.box_iou))),
        Figure::BoxPrecision => bs.map_or_else(Cell::absent, |b| Cell::num(Some(b.box_precision))),
        Figure::BoxRecall => bs.map_or_else(Cell::absent, |b| Cell::num(Some(b.box_recall))),
        Figure::BoxF1 => bs.map_or_else(Cell::absent, |b| Cell::num(Some(b.box_f1))),
        _ => Cell::absent(),
    }
}

/// The cells of one null edit of a record: answer equal, margin delta, map JS distance.
pub fn null_edit_cells(e: &NullEditRecord) -> [(Figure, Cell); 3] {
    [
        (
            Figure::NullAnswerEqual,
            Cell { text: if e.answer_equal { "yes" } else { "no" }.into(), raw: Some(f64::from(u8::from(e.answer_equal))) },
        ),
        (Figure::NullMarginDelta, Cell::signed(e.margin_delta)),
        (Figure::NullJsDistance, Cell::num(Some(e.js_distance))),
    ]
}

/// The cells of one edit's study figures: paraphrase JS, null JS, ratio, verdict.
pub fn null_study_cells(s: &NullEditStudy) -> [(Figure, Cell); 4] {
    let verdict = match s.paraphrase_to_null {
        None => "no ratio",
        Some(_) if s.flagged => "flagged",
        Some(_) => "not flagged",
    };
    [
        (Figure::ParaphraseJs, Cell::num(s.paraphrase_js)),
        (Figure::StudyNullJs, Cell::num(Some(s.null_js))),
        (Figure::ParaphraseToNull, Cell::num(s.paraphrase_to_null)),
        (Figure::NullEditFlag, Cell { text: verdict.into(), raw: s.paraphrase_to_null.map(|_| f64::from(u8::from(s.flagged))) }),
    ]
}

// ---- the boxes of G2 on the overlay ----

/// The kind of a box drawn on the overlay, each in its own style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxKind {
    /// The radiologist's box `B`.
    Roi,
    /// `B` mirrored about the image's vertical centre line.
    Mirror,
    /// A same-size control box (G2).
    Control,
}

impl BoxKind {
    pub const ALL: [BoxKind; 3] = [BoxKind::Roi, BoxKind::Mirror, BoxKind::Control];

    pub fn key(self) -> &'static str {
        match self {
            BoxKind::Roi => "roi",
            BoxKind::Mirror => "mirror",
            BoxKind::Control => "control",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            BoxKind::Roi => "radiologist box",
            BoxKind::Mirror => "mirror box",
            BoxKind::Control => "control boxes",
        }
    }

    /// `(stroke colour, line width in CSS pixels of the drawn overlay, dash pattern)`: colours no
    /// colour map (viridis, inferno, gray) nor the sink outline (magenta) uses, and three line
    /// styles, so the kinds stay apart in gray print too.
    pub fn style(self) -> (&'static str, f64, &'static [f64]) {
        match self {
            BoxKind::Roi => ("#00e5ff", 3.0, &[]),
            BoxKind::Mirror => ("#ff6d00", 2.5, &[8.0, 5.0]),
            BoxKind::Control => ("rgba(255, 255, 255, 0.85)", 1.0, &[2.0, 3.0]),
        }
    }
}

/// The boxes of one record on one map's geometry, in original-image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayBoxes {
    pub roi: PixelBox,
    pub mirror: PixelBox,
    /// The G2 control boxes on this geometry, in the spec's order.
    pub controls: Vec<PixelBox>,
}

impl OverlayBoxes {
    /// The boxes of `roi` on `geometry` (the shown map's grid and crop), by the shared code:
    /// `mirror_box` and `control_boxes`.
    pub fn of(geometry: &MapGeometry, roi: &PixelBox) -> Result<Self, MetricError> {
        Ok(Self { roi: *roi, mirror: mirror_box(roi, geometry.image_w), controls: control_boxes(geometry, roi)? })
    }

    /// Every box with its kind, controls first (drawn below the other two).
    pub fn all(&self) -> Vec<(BoxKind, PixelBox)> {
        let mut out: Vec<(BoxKind, PixelBox)> = self.controls.iter().map(|b| (BoxKind::Control, *b)).collect();
        out.push((BoxKind::Mirror, self.mirror));
        out.push((BoxKind::Roi, self.roi));
        out
    }
}

/// A box in original pixels as a rectangle `(x, y, w, h)` on a `pw x ph` bitmap laid over the
/// crop (the overlay canvas: see `study::overlay_box`); parts outside the crop fall outside the
/// bitmap and are clipped by the canvas.
pub fn box_on_bitmap(b: &PixelBox, crop: &PixelBox, pw: usize, ph: usize) -> (f64, f64, f64, f64) {
    let sx = pw as f64 / crop.width();
    let sy = ph as f64 / crop.height();
    ((b.x0 - crop.x0) * sx, (b.y0 - crop.y0) * sy, b.width() * sx, b.height() * sy)
}

/// The method a `overlay=` value names (its stored name, e.g. `occlusion`); `None` for the
/// record's own map (empty or unknown).
pub fn overlay_method_of(v: &str) -> Option<MapMethod> {
    serde_json::from_value(serde_json::Value::String(v.to_owned())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use radlens_shared::grounding::NullEdit;

    #[test]
    fn every_figure_has_a_unique_key_and_a_one_line_meaning() {
        let keys: std::collections::BTreeSet<&str> = Figure::ALL.iter().map(|f| f.key()).collect();
        assert_eq!(keys.len(), Figure::ALL.len());
        for f in Figure::ALL {
            let m = meaning(f);
            assert!(!m.is_empty() && !m.contains('\n') && m.ends_with('.'), "{f:?}: {m}");
        }
        assert!(Figure::MAP_ROWS.iter().all(|f| Figure::ALL.contains(f)));
    }

    #[test]
    fn cells_show_nulls_as_dashes_and_absent_parts_as_absent() {
        let g: GroundingRecord = serde_json::from_value(serde_json::json!({
            "occlusion": {"grid": 4, "input_side": 32, "occlusion_spearman": null, "occlusion_topk_overlap": 0.5,
                          "occlusion_support_mass": 0.25, "support_constant": false}
        }))
        .unwrap();
        assert_eq!(map_cell(&g, Figure::OcclusionSpearman), Cell { text: "—".into(), raw: None });
        assert_eq!(map_cell(&g, Figure::OcclusionTopkOverlap), Cell { text: "0.500".into(), raw: Some(0.5) });
        assert_eq!(map_cell(&g, Figure::RoiLift).raw, None);
        let e = NullEditRecord { edit: NullEdit::Jpeg90, answer_equal: false, margin_delta: Some(-0.25), js_distance: 0.125 };
        let cells = null_edit_cells(&e);
        assert_eq!((cells[0].1.text.as_str(), cells[1].1.text.as_str(), cells[2].1.raw), ("no", "-0.250", Some(0.125)));
        let s =
            NullEditStudy { edit: NullEdit::Jpeg90, paraphrase_js: Some(0.1), null_js: 0.2, paraphrase_to_null: Some(0.5), flagged: true };
        assert_eq!(null_study_cells(&s)[3].1.text, "flagged");
    }

    /// A 100 x 100 image, a 4 x 4 grid over all of it, a 20 x 20 box at (10, 40): its mirror is at
    /// (70, 40); the controls come from the shared enumeration.
    #[test]
    fn boxes_come_from_the_shared_code_and_land_on_the_bitmap() {
        let crop = PixelBox::new(0.0, 0.0, 100.0, 100.0).unwrap();
        let geometry = MapGeometry { h: 4, w: 4, crop, image_w: 100, image_h: 100 };
        let roi = PixelBox::from_xywh(10.0, 40.0, 20.0, 20.0).unwrap();
        let b = OverlayBoxes::of(&geometry, &roi).unwrap();
        assert_eq!(b.mirror, PixelBox::from_xywh(70.0, 40.0, 20.0, 20.0).unwrap());
        assert_eq!(b.controls, control_boxes(&geometry, &roi).unwrap());
        assert!(!b.controls.is_empty());
        let all = b.all();
        assert_eq!(all.last().map(|(k, _)| *k), Some(BoxKind::Roi));
        assert_eq!(all.len(), b.controls.len() + 2);
        assert_eq!(box_on_bitmap(&roi, &crop, 200, 200), (20.0, 80.0, 40.0, 40.0));
        // A crop that starts inside the image shifts the box.
        let inner = PixelBox::new(10.0, 0.0, 60.0, 100.0).unwrap();
        assert_eq!(box_on_bitmap(&roi, &inner, 100, 200), (0.0, 80.0, 40.0, 40.0));
        assert_eq!(overlay_method_of("occlusion"), Some(MapMethod::Occlusion));
        assert_eq!(overlay_method_of(""), None);
    }
}
