//! The report's figures, as PNG files under `plots/`: rates with their bootstrap intervals per
//! model and per strategy, map-metric histograms, cross-model divergence, latency, and overlays
//! of the fused attention on the X-ray for the most disagreeing studies.
//!
//! Drawing is plotters' bitmap backend into a memory buffer, encoded with the `image` crate the
//! backend already uses (no second PNG stack), with the DejaVu Sans font bundled in the binary
//! (`static/fonts/`, Bitstream Vera licence): figures render the same on any machine, offline,
//! without a system font. A run of random-weight models says so in every title.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use radlens_shared::answer::Answer;
use radlens_shared::fusion::MapMethod;
use radlens_shared::record::{Analysis, CaseRecord, Pass};
use radlens_shared::stats::{Interval, percentile_linear};
use thiserror::Error;

mod grounding;

use self::grounding::{conditions_by_model, randomization_curve, reliability};
use super::analysis::dedupe_and_sort;
use super::run_dir::{PLOTS, RunDir};

#[derive(Debug, Error)]
pub enum PlotError {
    #[error("{path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
}

type Result<T> = std::result::Result<T, PlotError>;

/// The bundled font, registered with plotters as `sans-serif`.
static FONT: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../static/fonts/DejaVuSans.ttf"));
const FAMILY: &str = "sans-serif";

/// Title suffix of a run whose models have random weights.
pub const RANDOM_WEIGHTS: &str = "random weights (pipeline demo)";

/// Series colours (Tableau 10), one per model or model pair.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

const SIZE: (u32, u32) = (860, 520);
/// Most disagreeing studies drawn as overlays.
const OVERLAY_STUDIES: usize = 4;
/// The weight-randomisation curve (the report shows it in its grounding section).
pub const RANDOMIZATION_PLOT: &str = "randomization_curve.png";
/// Answer agreement with the real image per condition (the report's image-conditions section).
pub const CONDITIONS_PLOT: &str = "conditions_by_model.png";
/// Accuracy by margin bin (the report's decision-quality section).
pub const RELIABILITY_PLOT: &str = "reliability.png";
/// At most this many variants (columns) and models (rows) per overlay figure.
const OVERLAY_VARIANTS: usize = 4;
const OVERLAY_MODELS: usize = 4;

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn register_font() -> std::result::Result<(), String> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the bundled font static/fonts/DejaVuSans.ttf cannot be read".to_owned())
    })
    .clone()
}

/// Writes every figure the analysis supports into `plots/` and returns the files written.
///
/// `images` is the folder the records' image paths are relative to; without it, or when a
/// study's image cannot be read, its overlay is skipped with a note on stderr (the other
/// figures need no image). Overlays from an earlier report (`overlay_*.png`) are removed first,
/// so `plots/` never mixes two reports' picks.
pub fn write_plots(dir: &RunDir, analysis: &Analysis, records: &[CaseRecord], images: Option<&Path>) -> Result<Vec<PathBuf>> {
    let out = dir.path(PLOTS);
    std::fs::create_dir_all(&out).map_err(|source| PlotError::Io { path: out.clone(), source })?;
    register_font().map_err(|message| PlotError::Draw { path: out.clone(), message })?;
    let (records, _) = dedupe_and_sort(records);
    let suffix = if analysis.random_weights { format!(" — {RANDOM_WEIGHTS}") } else { String::new() };
    let mut files = Vec::new();
    let mut emit = |name: &str, written: Result<bool>| -> Result<()> {
        if written? {
            files.push(out.join(name));
        }
        Ok(())
    };

    emit("rates_by_model.png", rates_by_model(&out.join("rates_by_model.png"), analysis, &suffix))?;
    emit("accuracy_by_strategy.png", by_strategy(&out.join("accuracy_by_strategy.png"), analysis, &suffix, Rate::Accuracy))?;
    emit("flip_rate_by_strategy.png", by_strategy(&out.join("flip_rate_by_strategy.png"), analysis, &suffix, Rate::FlipRate))?;
    for (name, metric) in [("focus_by_model.png", Metric::Focus), ("gini_by_model.png", Metric::Gini)] {
        emit(name, metric_histogram(&out.join(name), analysis, &records, &suffix, metric))?;
    }
    emit("cross_model_js.png", cross_model_histogram(&out.join("cross_model_js.png"), analysis, &suffix))?;
    emit("latency.png", latency_boxes(&out.join("latency.png"), analysis, &records, &suffix))?;
    emit(RANDOMIZATION_PLOT, randomization_curve(&out.join(RANDOMIZATION_PLOT), analysis, &suffix))?;
    emit(CONDITIONS_PLOT, conditions_by_model(&out.join(CONDITIONS_PLOT), analysis, &suffix))?;
    emit(RELIABILITY_PLOT, reliability(&out.join(RELIABILITY_PLOT), analysis, &suffix))?;

    remove_old_overlays(&out)?;
    match images {
        None => eprintln!("radlens: note: no --images folder given; overlay figures are skipped"),
        Some(images) => {
            let picks = analysis.disagreements.iter().filter(|d| {
                records.iter().any(|r| r.study_id == d.study_id && r.pass == Pass::Image && r.error.is_none() && r.map.is_some())
            });
            for (rank, d) in picks.take(OVERLAY_STUDIES).enumerate() {
                let name = format!("overlay_{}_{}.png", rank + 1, file_safe(&d.study_id));
                let path = out.join(&name);
                match overlay(&path, dir, analysis, &records, &d.study_id, images, rank + 1, &suffix) {
                    Ok(()) => files.push(path),
                    Err(OverlaySkip::Note(note)) => eprintln!("radlens: note: overlay of study {} skipped: {note}", d.study_id),
                    Err(OverlaySkip::Fatal(e)) => return Err(e),
                }
            }
        }
    }
    Ok(files)
}

fn remove_old_overlays(out: &Path) -> Result<()> {
    let entries = std::fs::read_dir(out).map_err(|source| PlotError::Io { path: out.to_path_buf(), source })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("overlay_") && name.ends_with(".png") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| PlotError::Io { path, source })?;
        }
    }
    Ok(())
}

/// A study id as a file-name part.
fn file_safe(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

// ---------------------------------------------------------------------------------------------
// Canvas

/// `Result<_, String>` from any displayable error, for drawing code.
trait Str<T> {
    fn s(self) -> std::result::Result<T, String>;
}

impl<T, E: std::fmt::Display> Str<T> for std::result::Result<T, E> {
    fn s(self) -> std::result::Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws onto `pixels` (RGB, `w x h`, already holding any raster content) and saves a PNG.
fn render(path: &Path, (w, h): (u32, u32), mut pixels: Vec<u8>, draw: impl FnOnce(&Area) -> std::result::Result<(), String>) -> Result<()> {
    let fail = |message: String| PlotError::Draw { path: path.to_path_buf(), message };
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(&root).map_err(fail)?;
        root.present().s().map_err(fail)?;
    }
    let img = image::RgbImage::from_raw(w, h, pixels).ok_or_else(|| fail("pixel buffer has the wrong size".to_owned()))?;
    img.save_with_format(path, image::ImageFormat::Png).map_err(|e| fail(format!("cannot write PNG: {e}")))
}

fn blank(w: u32, h: u32) -> Vec<u8> {
    vec![255; (w * h * 3) as usize]
}

/// A caption size that keeps long titles (a random-weights suffix) inside the figure.
fn caption_font(title: &str) -> TextStyle<'static> {
    let chars = title.chars().count();
    font(if chars <= 70 {
        18
    } else if chars <= 85 {
        16
    } else {
        14
    })
}

fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font())
}

/// Category names drawn centred under the x axis (plotters' numeric ticks would not land on
/// the categories).
/// The series legend every chart draws: a framed, translucent box at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), String> {
    chart.configure_series_labels().position(position).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(font(13)).draw().s()
}

fn category_labels<X, Y>(
    root: &Area,
    chart: &ChartContext<BitMapBackend, Cartesian2d<X, Y>>,
    names: &[String],
    y0: Y::ValueType,
) -> std::result::Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged,
    Y::ValueType: Clone,
{
    for (i, name) in names.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y0.clone()));
        root.draw(&Text::new(name.clone(), (px, py + 8), font(14).pos(Pos::new(HPos::Center, VPos::Top)))).s()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rates with intervals

#[derive(Clone, Copy)]
enum Rate {
    Accuracy,
    FlipRate,
}

/// One bar per (category, model): the estimate, with its interval as a whisker.
struct Bars {
    categories: Vec<String>,
    /// Per model: its name and one interval (or none) per category.
    series: Vec<(String, Vec<Option<Interval>>)>,
}

fn rates_by_model(path: &Path, a: &Analysis, suffix: &str) -> Result<bool> {
    let mut categories = vec!["accuracy".to_owned(), "flip rate".to_owned(), "full consistency".to_owned()];
    let reliance = a.models.iter().any(|m| m.image_reliance.is_some());
    if reliance {
        categories.push("image reliance".to_owned());
        categories.push("consistent, not image-reliant".to_owned());
    }
    let series = a
        .models
        .iter()
        .map(|m| {
            let mut v = vec![m.accuracy.clone(), m.flip_rate.clone(), m.full_consistency.clone()];
            if reliance {
                let r = m.image_reliance.as_ref();
                v.push(r.and_then(|r| r.rate.clone()));
                v.push(r.and_then(|r| r.consistent_not_reliant.share.clone()));
            }
            (m.model.clone(), v)
        })
        .collect();
    let level = level_of(a);
    bar_chart(path, &format!("Answer robustness per model ({level} CI){suffix}"), "share", &Bars { categories, series })
}

fn by_strategy(path: &Path, a: &Analysis, suffix: &str, rate: Rate) -> Result<bool> {
    let strategies: BTreeSet<&String> = a.models.iter().flat_map(|m| m.by_strategy.keys()).collect();
    let pick = |g: &radlens_shared::record::GroupStats| match rate {
        Rate::Accuracy => g.accuracy.clone(),
        Rate::FlipRate => g.flip_rate.clone(),
    };
    // Strategies with no value anywhere (the base's flip rate) are left out.
    let categories: Vec<String> =
        strategies.into_iter().filter(|s| a.models.iter().any(|m| m.by_strategy.get(*s).and_then(pick).is_some())).cloned().collect();
    let series =
        a.models.iter().map(|m| (m.model.clone(), categories.iter().map(|s| m.by_strategy.get(s).and_then(pick)).collect())).collect();
    let (what, y) = match rate {
        Rate::Accuracy => ("Accuracy", "accuracy"),
        Rate::FlipRate => ("Flip rate", "flip rate (polarity-adjusted, vs the base question)"),
    };
    let level = level_of(a);
    bar_chart(path, &format!("{what} by rephrasing strategy ({level} CI){suffix}"), y, &Bars { categories, series })
}

fn level_of(a: &Analysis) -> String {
    let level = a.models.iter().find_map(|m| m.accuracy.as_ref().map(|i| i.level)).unwrap_or(0.95);
    format!("{:.0}%", level * 100.0)
}

fn bar_chart(path: &Path, title: &str, y_desc: &str, bars: &Bars) -> Result<bool> {
    if bars.categories.is_empty() || bars.series.iter().all(|(_, v)| v.iter().all(Option::is_none)) {
        return Ok(false);
    }
    let n = bars.categories.len();
    let m = bars.series.len().max(1);
    let width = 0.8 / m as f64;
    render(path, SIZE, blank(SIZE.0, SIZE.1), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, caption_font(title))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(56)
            // Headroom above 1 for the value labels and the legend.
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..1.3)
            .s()?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_desc)
            .y_label_formatter(&|y| {
                if *y <= 1.0 + 1e-9 { format!("{y:.1}") } else { String::new() }
            })
            .label_style(font(13))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .s()?;
        for (j, (model, values)) in bars.series.iter().enumerate() {
            let c = color(j);
            let offset = (j as f64 - (m as f64 - 1.0) / 2.0) * width;
            let mut rects = Vec::new();
            let mut whiskers = Vec::new();
            let mut labels = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let x = i as f64 + offset;
                let Some(v) = v else {
                    labels.push(Text::new("n/a".to_owned(), (x, 0.0), font(11).pos(Pos::new(HPos::Center, VPos::Bottom))));
                    continue;
                };
                rects.push(Rectangle::new([(x - width * 0.42, 0.0), (x + width * 0.42, v.estimate)], c.mix(0.75).filled()));
                let cap = width * 0.15;
                whiskers.push(PathElement::new(vec![(x, v.lo), (x, v.hi)], BLACK.stroke_width(2)));
                whiskers.push(PathElement::new(vec![(x - cap, v.lo), (x + cap, v.lo)], BLACK.stroke_width(2)));
                whiskers.push(PathElement::new(vec![(x - cap, v.hi), (x + cap, v.hi)], BLACK.stroke_width(2)));
                labels.push(Text::new(
                    format!("{:.2}", v.estimate),
                    (x, v.hi.max(v.estimate) + 0.01),
                    font(11).pos(Pos::new(HPos::Center, VPos::Bottom)),
                ));
            }
            chart
                .draw_series(rects)
                .s()?
                .label(model.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
            chart.draw_series(whiskers).s()?;
            chart.draw_series(labels).s()?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        category_labels(root, &chart, &bars.categories, 0.0)
    })?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Distributions

#[derive(Clone, Copy)]
enum Metric {
    Focus,
    Gini,
}

/// A model's attention maps (image pass, no error, not a uniform fallback): what the analysis
/// summarises, so the histograms show the same rows.
fn attention_maps<'a>(records: &'a [CaseRecord], model: &'a str) -> impl Iterator<Item = &'a CaseRecord> + 'a {
    records.iter().filter(move |r| {
        r.model == model
            && r.pass == Pass::Image
            && r.error.is_none()
            && r.map.as_ref().is_some_and(|m| m.provenance.method != MapMethod::UniformFallback)
    })
}

fn metric_histogram(path: &Path, a: &Analysis, records: &[CaseRecord], suffix: &str, metric: Metric) -> Result<bool> {
    let series: Vec<(String, Vec<f64>)> = a
        .models
        .iter()
        .map(|m| {
            let v = attention_maps(records, &m.model)
                .filter_map(|r| r.map.as_ref())
                .map(|map| match metric {
                    Metric::Focus => map.metrics.focus,
                    Metric::Gini => map.metrics.gini,
                })
                .collect();
            (m.model.clone(), v)
        })
        .filter(|(_, v): &(String, Vec<f64>)| !v.is_empty())
        .collect();
    let (name, note) = match metric {
        Metric::Focus => ("focus", "1 - H/ln n: 0 = uniform, 1 = one cell"),
        Metric::Gini => ("Gini", "0 = uniform, 1 = one cell"),
    };
    histogram(path, &format!("Attention {name} per model ({note}){suffix}"), name, "share of maps", &series, (0.0, 1.0))
}

fn cross_model_histogram(path: &Path, a: &Analysis, suffix: &str) -> Result<bool> {
    let series: Vec<(String, Vec<f64>)> = a
        .cross_model
        .iter()
        .filter(|c| !c.per_row.is_empty())
        .map(|c| (format!("{} vs {}", c.model_a, c.model_b), c.per_row.iter().map(|r| r.js_distance).collect()))
        .collect();
    let grid = a.cross_model.first().map_or(0, |c| c.grid);
    histogram(
        path,
        &format!("Cross-model attention divergence, same question ({grid}x{grid} common grid){suffix}"),
        "Jensen-Shannon distance (bits): 0 = same map, 1 = disjoint",
        "share of rows",
        &series,
        (0.0, 1.0),
    )
}

/// Overlaid histograms (20 bins over `range`) of each series as a share of its values.
fn histogram(path: &Path, title: &str, x_desc: &str, y_desc: &str, series: &[(String, Vec<f64>)], range: (f64, f64)) -> Result<bool> {
    if series.is_empty() {
        return Ok(false);
    }
    const BINS: usize = 20;
    let step = (range.1 - range.0) / BINS as f64;
    let shares: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, v)| {
            let mut counts = vec![0usize; BINS];
            for &x in v {
                let bin = (((x - range.0) / step).floor().max(0.0) as usize).min(BINS - 1);
                counts[bin] += 1;
            }
            counts.into_iter().map(|c| c as f64 / v.len() as f64).collect()
        })
        .collect();
    let top = shares.iter().flatten().copied().fold(0.0, f64::max).max(0.05) * 1.15;
    render(path, SIZE, blank(SIZE.0, SIZE.1), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, caption_font(title))
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(56)
            .build_cartesian_2d(range.0..range.1, 0.0..top)
            .s()?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style(font(13))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .s()?;
        for (j, ((name, values), share)) in series.iter().zip(&shares).enumerate() {
            let c = color(j);
            let bars = share.iter().enumerate().filter(|(_, s)| **s > 0.0).map(move |(b, s)| {
                let x0 = range.0 + b as f64 * step;
                Rectangle::new([(x0, 0.0), (x0 + step, *s)], c.mix(0.35).filled())
            });
            chart
                .draw_series(bars)
                .s()?
                .label(format!("{name} (n = {})", values.len()))
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
            let outline = share.iter().enumerate().filter(|(_, s)| **s > 0.0).map(move |(b, s)| {
                let x0 = range.0 + b as f64 * step;
                Rectangle::new([(x0, 0.0), (x0 + step, *s)], c.stroke_width(2))
            });
            chart.draw_series(outline).s()?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })?;
    Ok(true)
}

/// Box plots (log scale) per stage and model: box = quartiles, bar = median, whiskers = min and
/// max. Zeros are left out: work shared by a study's variants is recorded on its first variant
/// only, so the others read 0 ms.
fn latency_boxes(path: &Path, a: &Analysis, records: &[CaseRecord], suffix: &str) -> Result<bool> {
    type Stage = fn(&radlens_shared::record::Latency) -> f64;
    let stages: [(&str, Stage); 5] = [
        ("image encode", |l| l.image_encode_ms),
        ("prefill", |l| l.prefill_ms),
        ("decode", |l| l.decode_ms),
        ("capture", |l| l.capture_ms),
        ("total", |l| l.total_ms),
    ];
    // [stage][model] -> sorted positive values
    let values: Vec<Vec<Vec<f64>>> = stages
        .iter()
        .map(|(_, f)| {
            a.models
                .iter()
                .map(|m| {
                    let mut v: Vec<f64> = records
                        .iter()
                        .filter(|r| r.model == m.model && r.pass == Pass::Image && r.error.is_none())
                        .map(|r| f(&r.latency))
                        .filter(|x| x.is_finite() && *x > 0.0)
                        .collect();
                    v.sort_by(f64::total_cmp);
                    v
                })
                .collect()
        })
        .collect();
    let all: Vec<f64> = values.iter().flatten().flatten().copied().collect();
    let (Some(lo), Some(hi)) = (all.iter().copied().reduce(f64::min), all.iter().copied().reduce(f64::max)) else {
        return Ok(false);
    };
    let names: Vec<String> = stages.iter().map(|(n, _)| (*n).to_owned()).collect();
    let m = a.models.len().max(1);
    let width = 0.8 / m as f64;
    let (y0, y1) = (lo / 1.5, hi * 1.5);
    let latency_title = format!("Latency per row and stage (ms, log scale){suffix}");
    render(path, SIZE, blank(SIZE.0, SIZE.1), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&latency_title, caption_font(&latency_title))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..stages.len() as f64 - 0.5, (y0..y1).log_scale())
            .s()?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("milliseconds")
            .y_label_formatter(&|y| ms_label(*y))
            .label_style(font(13))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .s()?;
        for (j, model) in a.models.iter().enumerate() {
            let c = color(j);
            let offset = (j as f64 - (m as f64 - 1.0) / 2.0) * width;
            let mut boxes = Vec::new();
            let mut lines = Vec::new();
            for (i, per_model) in values.iter().enumerate() {
                let v = &per_model[j];
                let (Some(q1), Some(med), Some(q3)) = (percentile_linear(v, 0.25), percentile_linear(v, 0.5), percentile_linear(v, 0.75))
                else {
                    continue;
                };
                let x = i as f64 + offset;
                let half = width * 0.4;
                boxes.push(Rectangle::new([(x - half, q1), (x + half, q3)], c.mix(0.6).filled()));
                lines.push(PathElement::new(vec![(x - half, med), (x + half, med)], BLACK.stroke_width(2)));
                lines.push(PathElement::new(vec![(x, v[0]), (x, q1)], c.stroke_width(2)));
                lines.push(PathElement::new(vec![(x, q3), (x, v[v.len() - 1])], c.stroke_width(2)));
            }
            chart
                .draw_series(boxes)
                .s()?
                .label(model.model.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
            chart.draw_series(lines).s()?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        category_labels(root, &chart, &names, y0)?;
        root.draw(&Text::new(
            "box: quartiles, bar: median, whiskers: min-max; 0 ms rows (work shared with the study's first variant) left out",
            (14, SIZE.1 as i32 - 14),
            font(12).pos(Pos::new(HPos::Left, VPos::Bottom)),
        ))
        .s()
    })?;
    Ok(true)
}

/// Milliseconds with as many decimals as their size needs.
fn ms_label(y: f64) -> String {
    if y >= 10.0 {
        format!("{y:.0}")
    } else if y >= 1.0 {
        format!("{y:.1}")
    } else {
        format!("{y:.3}")
    }
}

// ---------------------------------------------------------------------------------------------
// Overlays

enum OverlaySkip {
    /// Not drawable (no image, unreadable map): noted, the report goes on.
    Note(String),
    Fatal(PlotError),
}

const PANEL: u32 = 230;
const LABEL_H: u32 = 40;
const HEADER_H: u32 = 64;
const MARGIN: u32 = 12;
const COLORBAR_W: u32 = 80;

/// A perceptually ordered dark-to-bright colour ramp (inferno-like), `v` in [0, 1].
fn heat(v: f64) -> [f64; 3] {
    const STOPS: [[f64; 3]; 5] = [[0.0, 0.0, 4.0], [87.0, 16.0, 110.0], [188.0, 55.0, 84.0], [249.0, 142.0, 9.0], [252.0, 255.0, 164.0]];
    let t = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f]
}

/// One cell of the figure: a model's map of one variant.
struct Panel<'a> {
    record: &'a CaseRecord,
    /// The map normalised to its maximum, `h x w`, or `None` when it has none.
    map: Option<Vec<f64>>,
}

#[allow(clippy::too_many_arguments)]
fn overlay(
    path: &Path,
    dir: &RunDir,
    analysis: &Analysis,
    records: &[CaseRecord],
    study: &str,
    images: &Path,
    rank: usize,
    suffix: &str,
) -> std::result::Result<(), OverlaySkip> {
    let rows: Vec<&CaseRecord> = records.iter().filter(|r| r.study_id == study && r.pass == Pass::Image && r.error.is_none()).collect();
    let Some(first) = rows.first() else {
        return Err(OverlaySkip::Note("no answered rows".to_owned()));
    };
    let image_path = images.join(&first.image);
    let gray =
        image::open(&image_path).map_err(|e| OverlaySkip::Note(format!("cannot read image {}: {e}", image_path.display())))?.to_luma8();
    let variants: Vec<u32> = rows.iter().map(|r| r.variant_index).collect::<BTreeSet<_>>().into_iter().take(OVERLAY_VARIANTS).collect();
    let models: Vec<&str> =
        analysis.models.iter().map(|m| m.model.as_str()).filter(|m| rows.iter().any(|r| r.model == *m)).take(OVERLAY_MODELS).collect();

    // Maps normalised to their maximum, for display only.
    let mut grid: BTreeMap<(usize, usize), Panel> = BTreeMap::new();
    for (mi, model) in models.iter().enumerate() {
        for (vi, v) in variants.iter().enumerate() {
            let Some(record) = rows.iter().find(|r| r.model == *model && r.variant_index == *v) else {
                continue;
            };
            let map = match &record.map {
                Some(m) => {
                    let values = dir.read_f32(&m.values).map_err(|e| OverlaySkip::Note(format!("{e}: {}", source_of(&e))))?;
                    let max = values.iter().copied().fold(0.0f32, f32::max);
                    (max > 0.0 && values.len() == m.provenance.geometry.h * m.provenance.geometry.w)
                        .then(|| values.iter().map(|x| f64::from(x.max(0.0) / max)).collect())
                }
                None => None,
            };
            grid.insert((mi, vi), Panel { record, map });
        }
    }

    let (iw, ih) = gray.dimensions();
    if iw == 0 || ih == 0 {
        return Err(OverlaySkip::Note(format!("image {} is empty", image_path.display())));
    }
    let scale = f64::from(PANEL) / f64::from(iw.max(ih));
    let (dw, dh) = (((f64::from(iw) * scale).round() as u32).max(1), ((f64::from(ih) * scale).round() as u32).max(1));
    let shown = image::imageops::resize(&gray, dw, dh, image::imageops::FilterType::Triangle);

    let cols = variants.len() as u32;
    let nrows = models.len() as u32;
    let w = MARGIN * 2 + cols * (PANEL + MARGIN) + COLORBAR_W;
    let h = HEADER_H + nrows * (PANEL + LABEL_H + MARGIN) + MARGIN;
    let mut pixels = blank(w, h);
    let put = |pixels: &mut Vec<u8>, x: u32, y: u32, rgb: [f64; 3]| {
        let i = ((y * w + x) * 3) as usize;
        for k in 0..3 {
            pixels[i + k] = rgb[k].round().clamp(0.0, 255.0) as u8;
        }
    };
    let origin = |mi: usize, vi: usize| -> (u32, u32) {
        let x = MARGIN + vi as u32 * (PANEL + MARGIN) + (PANEL - dw) / 2;
        let y = HEADER_H + mi as u32 * (PANEL + LABEL_H + MARGIN) + (PANEL - dh) / 2;
        (x, y)
    };
    for ((mi, vi), panel) in &grid {
        let (ox, oy) = origin(*mi, *vi);
        let geo = panel.record.map.as_ref().map(|m| m.provenance.geometry);
        for py in 0..dh {
            for px in 0..dw {
                let g = f64::from(shown.get_pixel(px, py)[0]);
                let mut rgb = [g, g, g];
                if let (Some(map), Some(geo)) = (&panel.map, geo) {
                    // Where this display pixel lies in the original image, then in the grid.
                    let x = (f64::from(px) + 0.5) / f64::from(dw) * f64::from(geo.image_w);
                    let y = (f64::from(py) + 0.5) / f64::from(dh) * f64::from(geo.image_h);
                    let c = ((x - geo.crop.x0) / geo.crop.width() * geo.w as f64).floor();
                    let r = ((y - geo.crop.y0) / geo.crop.height() * geo.h as f64).floor();
                    if c >= 0.0 && r >= 0.0 && (c as usize) < geo.w && (r as usize) < geo.h {
                        let v = map[r as usize * geo.w + c as usize];
                        let a = 0.7 * v;
                        let hc = heat(v);
                        rgb = [g * (1.0 - a) + hc[0] * a, g * (1.0 - a) + hc[1] * a, g * (1.0 - a) + hc[2] * a];
                    }
                }
                put(&mut pixels, ox + px, oy + py, rgb);
            }
        }
    }
    // Colour bar: bright (top) = the map's maximum.
    let (bx, by, bh) = (w - COLORBAR_W + 10, HEADER_H + 16, (nrows * (PANEL + LABEL_H + MARGIN)).min(260).saturating_sub(40).max(40));
    for y in 0..bh {
        let rgb = heat(1.0 - f64::from(y) / f64::from(bh.max(2) - 1));
        for x in 0..14 {
            put(&mut pixels, bx + x, by + y, rgb);
        }
    }

    let base_answer: BTreeMap<&str, Answer> = rows
        .iter()
        .filter(|r| r.variant_index == 0)
        .filter_map(|r| Some((r.model.as_str(), r.parsed_answer?.with_polarity(r.polarity))))
        .collect();
    let finding = first.finding.clone().unwrap_or_else(|| "no finding named".to_owned());
    let fatal = |e: PlotError| OverlaySkip::Fatal(e);
    render(path, (w, h), pixels, |root| {
        root.draw(&Text::new(format!("#{rank} most disagreeing: study {study} ({finding}){suffix}"), (MARGIN as i32, 10), font(17))).s()?;
        root.draw(&Text::new(
            "fused attention over the X-ray, scaled to each map's maximum; green: radiologist box; cyan: the model's crop",
            (MARGIN as i32, 36),
            font(12),
        ))
        .s()?;
        for ((mi, vi), panel) in &grid {
            let (ox, oy) = origin(*mi, *vi);
            let r = panel.record;
            let to_display = |x: f64, y: f64, iw: u32, ih: u32| -> (i32, i32) {
                (
                    (f64::from(ox) + x / f64::from(iw) * f64::from(dw)).round() as i32,
                    (f64::from(oy) + y / f64::from(ih) * f64::from(dh)).round() as i32,
                )
            };
            let (gw, gh) = r.map.as_ref().map_or((iw, ih), |m| (m.provenance.geometry.image_w, m.provenance.geometry.image_h));
            if let Some(m) = &r.map {
                let crop = m.provenance.geometry.crop;
                if crop.x0 > 0.0 || crop.y0 > 0.0 || crop.x1 < f64::from(gw) || crop.y1 < f64::from(gh) {
                    root.draw(&Rectangle::new(
                        [to_display(crop.x0, crop.y0, gw, gh), to_display(crop.x1, crop.y1, gw, gh)],
                        CYAN.stroke_width(1),
                    ))
                    .s()?;
                }
            }
            if let Some(b) = &r.roi {
                root.draw(&Rectangle::new([to_display(b.x0, b.y0, gw, gh), to_display(b.x1, b.y1, gw, gh)], GREEN.stroke_width(2))).s()?;
            }
            let answer = r.parsed_answer.map_or("-", Answer::as_str);
            let truth = r.ground_truth.map_or("-", Answer::as_str);
            let flipped = r.variant_index > 0
                && r.parsed_answer.zip(base_answer.get(r.model.as_str())).is_some_and(|(a, b)| a.with_polarity(r.polarity) != *b);
            let neg = if r.polarity < 0 { ", negated" } else { "" };
            let line1 = format!("{} · v{} {}{neg}", r.model, r.variant_index, r.strategy);
            let line2 = format!(
                "said {answer}, truth {truth}{}{}",
                if flipped { " · FLIPPED" } else { "" },
                if panel.map.is_none() { " · no map" } else { "" }
            );
            let lx = (MARGIN + *vi as u32 * (PANEL + MARGIN)) as i32;
            let ly = (HEADER_H + *mi as u32 * (PANEL + LABEL_H + MARGIN) + PANEL + 4) as i32;
            root.draw(&Text::new(line1, (lx, ly), font(12))).s()?;
            let style = if flipped { font(12).color(&RED) } else { font(12) };
            root.draw(&Text::new(line2, (lx, ly + 16), style)).s()?;
        }
        root.draw(&Text::new("max", ((bx + 18) as i32, by as i32), font(12))).s()?;
        root.draw(&Text::new("0", ((bx + 18) as i32, (by + bh - 12) as i32), font(12))).s()?;
        Ok(())
    })
    .map_err(fatal)
}

fn source_of(e: &dyn std::error::Error) -> String {
    e.source().map_or_else(String::new, |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::analysis::{analyze, fixture};

    fn png_size(path: &Path) -> (u32, u32) {
        let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (img.width(), img.height())
    }

    // The fixture has a text-only pass (real and blank make the conditions chart) and margins
    // (the reliability chart); no randomisation check, so no randomisation figure.
    const CHARTS: [&str; 9] = [
        "rates_by_model.png",
        "accuracy_by_strategy.png",
        "flip_rate_by_strategy.png",
        "focus_by_model.png",
        "gini_by_model.png",
        "cross_model_js.png",
        "latency.png",
        "conditions_by_model.png",
        "reliability.png",
    ];

    #[test]
    fn every_figure_is_written_with_overlays_for_the_most_disagreeing_studies() {
        let (dir, images) = fixture::write_run("plots", 7);
        let analysis = analyze(&dir).unwrap();
        let records = dir.read_records().unwrap();
        let files = write_plots(&dir, &analysis, &records, Some(&images)).unwrap();
        let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        let mut expected: Vec<String> = CHARTS.iter().map(|s| (*s).to_owned()).collect();
        // Ranked s3, s2, s1 (see the analysis tests).
        expected.extend(["overlay_1_s3.png", "overlay_2_s2.png", "overlay_3_s1.png"].map(str::to_owned));
        assert_eq!(names, expected);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 1000, "{}", f.display());
            let (w, h) = png_size(f);
            assert!(w >= 400 && h >= 300, "{}: {w}x{h}", f.display());
        }
        // 3 variants x 2 models of 230 px panels.
        assert_eq!(png_size(&dir.path("plots/overlay_1_s3.png")), (12 * 2 + 3 * (230 + 12) + 80, 64 + 2 * (230 + 40 + 12) + 12));
    }

    #[test]
    fn overlays_are_skipped_without_readable_images() {
        let (dir, _) = fixture::write_run("plots-noimg", 7);
        let analysis = analyze(&dir).unwrap();
        let records = dir.read_records().unwrap();
        let without = write_plots(&dir, &analysis, &records, None).unwrap();
        assert_eq!(without.len(), CHARTS.len());
        let missing = dir.root().join("no-such-folder");
        let unreadable = write_plots(&dir, &analysis, &records, Some(&missing)).unwrap();
        assert_eq!(unreadable.len(), CHARTS.len());
        assert!(!dir.path("plots/overlay_1_s3.png").exists());
    }

    #[test]
    fn the_heat_ramp_runs_dark_to_bright() {
        let lum = |v: f64| heat(v).iter().sum::<f64>();
        let steps: Vec<f64> = (0..=10).map(|i| lum(f64::from(i) / 10.0)).collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
        assert_eq!(heat(-1.0), heat(0.0));
        assert_eq!(heat(2.0), heat(1.0));
        assert_eq!(file_safe("a/b c#1"), "a_b_c_1");
    }
}
