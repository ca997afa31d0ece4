//! The figures of the grounding and image-condition checks: the weight-randomisation curve
//! (G5), answer agreement per image condition (G6) and accuracy by margin bin (G7).

use std::path::Path;

use plotters::prelude::*;
use radlens_shared::record::Analysis;

use super::{Bars, Result, SIZE, Str, bar_chart, blank, caption_font, color, font, legend, level_of, render};

/// The weight-randomisation cascade per model: the mean Spearman of each step's map with the
/// original (the original itself at 1), and the insensitivity threshold. The x axis is the share
/// of the model's language-model layers re-drawn, so models of different depths line up; the
/// vision step stands after 100%.
pub(super) fn randomization_curve(path: &Path, a: &Analysis, suffix: &str) -> Result<bool> {
    use radlens_shared::grounding::CascadeStep;
    const VISION_X: f64 = 1.2;
    let curves: Vec<(&str, &radlens_shared::record::RandomizationSummary)> =
        a.models.iter().filter_map(|m| Some((m.model.as_str(), m.randomization.as_ref()?))).collect();
    if curves.is_empty() {
        return Ok(false);
    }
    let title = format!("Weight randomisation: map rank correlation with the original{suffix}");
    let (x0, x1) = (-0.05, VISION_X + 0.1);
    render(path, SIZE, blank(SIZE.0, SIZE.1), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&title, caption_font(&title))
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, -1.05..1.05)
            .s()?;
        chart
            .configure_mesh()
            .x_desc("language-model layers re-drawn from the top (share of the model's), then the vision tower too")
            .y_desc("Spearman with the original map")
            .x_labels(30)
            .x_label_formatter(&|x| {
                let quarter = (x * 4.0).round();
                if (x - VISION_X).abs() < 1e-6 {
                    "+ vision".to_owned()
                } else if (x * 4.0 - quarter).abs() < 1e-6 && (0.0..=4.0).contains(&quarter) {
                    format!("{:.0}%", quarter * 25.0)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y: &f64| format!("{:.1}", if y.abs() < 1e-9 { 0.0 } else { *y }))
            .label_style(font(13))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .s()?;
        let t = radlens_shared::grounding::randomization::INSENSITIVE_SPEARMAN;
        // Dashes by hand: plotters' line series are a feature this build leaves out.
        let grey = RGBColor(150, 150, 150);
        let dashes = (0..).map(|i| x0 + 0.03 * f64::from(i)).take_while(|x| *x < x1);
        chart
            .draw_series(dashes.map(|x| PathElement::new([(x, t), ((x + 0.018).min(x1), t)], grey.stroke_width(2))))
            .s()?
            .label(format!("insensitive above {t} after all LM layers"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], grey.stroke_width(2)));
        for (j, (model, r)) in curves.iter().enumerate() {
            let c = color(j);
            let layers = f64::from(r.curve.lm_layers.max(1));
            let points: Vec<(f64, f64)> = std::iter::once((0.0, 1.0))
                .chain(r.curve.points.iter().filter_map(|p| {
                    let x = match p.step {
                        CascadeStep::Layers(k) => f64::from(k) / layers,
                        CascadeStep::Vision => VISION_X,
                    };
                    Some((x, p.spearman?))
                }))
                .collect();
            chart
                .draw_series(std::iter::once(PathElement::new(points.clone(), c.stroke_width(2))))
                .s()?
                .label(format!("{model} ({} LM layers, n = {})", r.curve.lm_layers, r.inputs))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled()))).s()?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerLeft)
    })?;
    Ok(true)
}

/// Per model and image condition: how often the answer equals the real image's.
pub(super) fn conditions_by_model(path: &Path, a: &Analysis, suffix: &str) -> Result<bool> {
    let conditions: Vec<radlens_shared::grounding::ImageCondition> = radlens_shared::grounding::ImageCondition::ALL
        .into_iter()
        .filter(|c| a.models.iter().filter_map(|m| m.conditions.as_ref()).any(|x| x.conditions.iter().any(|s| s.condition == *c)))
        .collect();
    if conditions.len() < 2 {
        return Ok(false);
    }
    let series = a
        .models
        .iter()
        .map(|m| {
            let of = |c| m.conditions.as_ref()?.conditions.iter().find(|s| s.condition == c)?.answer_agreement.clone();
            (m.model.clone(), conditions.iter().map(|c| of(*c)).collect())
        })
        .collect();
    let categories = conditions.iter().map(|c| c.name().to_owned()).collect();
    let title = format!("Answer agreement with the real image, per image condition ({} CI){suffix}", level_of(a));
    bar_chart(path, &title, "share of rows answered as on the real image", &Bars { categories, series })
}

/// Per model: accuracy of the rows in each `|logit(yes) - logit(no)|` bin.
pub(super) fn reliability(path: &Path, a: &Analysis, suffix: &str) -> Result<bool> {
    let Some(bins) = a.models.iter().find_map(|m| Some(&m.decision.as_ref()?.reliability)) else {
        return Ok(false);
    };
    let categories = bins.iter().map(|b| b.hi.map_or_else(|| format!("|m| ≥ {}", b.lo), |hi| format!("{} ≤ |m| < {hi}", b.lo))).collect();
    let series = a
        .models
        .iter()
        .map(|m| {
            let accuracy = |i: usize| m.decision.as_ref()?.reliability.get(i)?.accuracy.clone();
            (m.model.clone(), (0..bins.len()).map(accuracy).collect())
        })
        .collect();
    let title = format!("Reliability: accuracy by yes/no margin ({} CI){suffix}", level_of(a));
    bar_chart(path, &title, "accuracy", &Bars { categories, series })
}
