//! The human side of a run: `report.md` (a two-minute summary first, then the tables with
//! their intervals, the figures and the most disagreeing studies) and `records.csv` (every
//! record flattened for a spreadsheet).
//!
//! Both are derived from [`Analysis`] and the records only, so `radlens report` can rebuild
//! them at any time; both are written to a temporary file and renamed, so a reader never sees
//! half a report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use radlens_shared::grounding::ImageCondition;
use radlens_shared::record::{Analysis, CaseRecord, GroupStats, ModelAnalysis, RunManifest, Summary};
use radlens_shared::records_csv;
use radlens_shared::stats::Interval;
use thiserror::Error;

mod conditions;
mod grounding;

use super::analysis::{NO_FINDING, dedupe_and_sort};
use super::plots::RANDOM_WEIGHTS;
use super::run_dir::{RECORDS_CSV, REPORT, RunDir};

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
}

type Result<T> = std::result::Result<T, ReportError>;

/// How many of the most disagreeing studies the report lists.
const TOP_STUDIES: usize = 10;

/// Writes `report.md` and returns its path. `plots` are the files [`super::plots::write_plots`]
/// wrote; they are linked relative to the run directory.
pub fn write_report(dir: &RunDir, manifest: &RunManifest, analysis: &Analysis, plots: &[PathBuf]) -> Result<PathBuf> {
    let rel: Vec<String> = plots.iter().map(|p| p.strip_prefix(dir.root()).unwrap_or(p).to_string_lossy().replace('\\', "/")).collect();
    let text = render_report(manifest, analysis, &rel);
    let path = dir.path(REPORT);
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|source| ReportError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn interval(i: Option<&Interval>) -> String {
    match i {
        Some(i) => format!("{:.3} [{:.3}, {:.3}]", i.estimate, i.lo, i.hi),
        None => "–".to_owned(),
    }
}

fn pct(i: Option<&Interval>) -> String {
    match i {
        Some(i) => format!("{:.1}% (95% CI {:.1}–{:.1}%)", 100.0 * i.estimate, 100.0 * i.lo, 100.0 * i.hi)
            .replace("95%", &format!("{:.0}%", 100.0 * i.level)),
        None => "no value".to_owned(),
    }
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

fn mean_median(s: Option<&Summary>, digits: usize) -> String {
    s.map_or_else(|| "–".to_owned(), |s| format!("{:.digits$} / {:.digits$}", s.mean, s.median))
}

/// Markdown table cells cannot hold `|` or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", header.iter().map(|_| "---|").collect::<String>());
    for r in rows {
        let _ = writeln!(out, "| {} |", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------
// The report

/// The whole `report.md` text; `plots` are paths relative to the run directory.
pub fn render_report(manifest: &RunManifest, a: &Analysis, plots: &[String]) -> String {
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(o, "# radlens report: run `{}`\n", a.run_id);
    let random: Vec<&str> = a.models.iter().filter(|m| m.random_weights).map(|m| m.model.as_str()).collect();
    if !random.is_empty() {
        let _ = writeln!(
            o,
            "> **⚠ WARNING: {RANDOM_WEIGHTS}.** {} {} random weights: every answer, rate and map below exercises the pipeline and says nothing about medicine or about any real model.\n",
            random.join(", "),
            if random.len() == 1 { "has" } else { "have" }
        );
    }
    let built: Vec<(&str, &str)> = a.models.iter().filter_map(|m| Some((m.model.as_str(), m.purpose.as_deref()?))).collect();
    if !built.is_empty() {
        let _ = writeln!(
            o,
            "> **Models built for a known answer.** Each was trained to answer from one planted cause, so every figure below can be checked against it (nothing here is medical):"
        );
        for (name, purpose) in built {
            let _ = writeln!(o, "> - `{name}`: {}", purpose.replace('\n', " "));
        }
        o.push('\n');
    }
    summary(o, manifest, a);
    per_model(o, a);
    strategies(o, a);
    findings(o, a);
    reliance(o, a);
    comparisons(o, a);
    maps(o, a);
    image_roles(o, a);
    grounding::grounding(o, a, plots);
    conditions::image_conditions(o, a, plots);
    conditions::decision_quality(o, a, plots);
    trust(o, a);
    margins_latency(o, a);
    figures(o, plots);
    disagreeing(o, a, plots);
    if !a.notes.is_empty() {
        let _ = writeln!(o, "## Notes\n");
        for n in &a.notes {
            let _ = writeln!(o, "- {n}");
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "---\nRecomputed from `records.jsonl` by `radlens report`; the numbers are in `analysis.json`, the rows in `records.csv`. Definitions: the project's metrics spec (`fixtures/spec/metrics.md`)."
    );
    out
}

fn summary(o: &mut String, manifest: &RunManifest, a: &Analysis) {
    let _ = writeln!(o, "## Summary\n");
    let models: Vec<String> = manifest
        .models
        .iter()
        .map(|m| {
            // 0 x 0: the grid follows each image (Qwen2.5-VL's dynamic resolution).
            let grid =
                if m.grid_h == 0 || m.grid_w == 0 { "per-image grid".to_string() } else { format!("{}x{} grid", m.grid_h, m.grid_w) };
            format!("`{}` ({}, {}, {grid}{})", m.name, m.architecture, m.dtype, if m.random_weights { ", **random weights**" } else { "" })
        })
        .collect();
    let _ = writeln!(o, "- **Models:** {}", models.join("; "));
    let _ = writeln!(
        o,
        "- **Data:** `{}`: {} rows in {} studies ({} rows planned for this run{}).",
        manifest.study.csv_name,
        manifest.study.rows,
        manifest.study.studies,
        manifest.study.planned_rows,
        manifest.shard.map_or_else(String::new, |(i, n)| format!(", shard {} of {n}", i + 1))
    );
    let r = &a.records;
    let _ = writeln!(
        o,
        "- **Records:** {} read: {} image pass, {} text-only (blank image) pass; **error records: {}**, counted and excluded from every statistic{}{}.",
        r.read,
        r.image_pass,
        r.blank_image_pass,
        r.errors,
        if r.duplicates > 0 { format!("; duplicate records ignored: {}", r.duplicates) } else { String::new() },
        if r.unscorable > 0 {
            format!("; unscorable records (no answer or no yes/no truth) left out: {}", r.unscorable)
        } else {
            String::new()
        },
    );
    for m in &a.models {
        let _ = writeln!(
            o,
            "- **`{}`:** accuracy {}; flip rate {}; {} of {} rows answered.",
            m.model,
            pct(m.accuracy.as_ref()),
            pct(m.flip_rate.as_ref()),
            m.answered,
            m.rows
        );
    }
    for f in biggest_findings(a) {
        let _ = writeln!(o, "- **Finding:** {f}");
    }
    let b = &a.bootstrap;
    let _ = writeln!(
        o,
        "- **Intervals:** percentile cluster bootstrap, {} resamples, seed {}, resampling unit: {} (never rows).\n",
        b.resamples, b.seed, b.unit
    );
}

/// The sentences a reviewer should read first: the least robust (model, strategy), a
/// significant paired difference, the dangerous quadrant, and a model whose answers follow a
/// named confound.
fn biggest_findings(a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    let worst = a
        .models
        .iter()
        .flat_map(|m| m.by_strategy.iter().filter_map(move |(s, g)| Some((m, s, g.flip_rate.as_ref()?))))
        .max_by(|x, y| x.2.estimate.total_cmp(&y.2.estimate).then(y.1.cmp(x.1)));
    if let Some((m, s, i)) = worst {
        if i.estimate > 0.0 {
            out.push(format!(
                "the least robust rephrasing is **{s}**: `{}` changes its (polarity-adjusted) answer on {} of those questions.",
                m.model,
                pct(Some(i))
            ));
        } else {
            out.push("no model changed its answer under any rephrasing.".to_owned());
        }
    }
    for c in &a.comparisons {
        if c.mcnemar.p_clustered < 0.05 {
            let (better, worse) = match c.accuracy_difference.as_ref() {
                Some(d) if d.estimate < 0.0 => (&c.model_b, &c.model_a),
                _ => (&c.model_a, &c.model_b),
            };
            out.push(format!(
                "`{better}` is more accurate than `{worse}` on the {} rows both answered (difference A−B {}, clustered McNemar p = {:.3}).",
                c.rows,
                interval(c.accuracy_difference.as_ref()),
                c.mcnemar.p_clustered
            ));
        }
    }
    if a.comparisons.iter().all(|c| c.mcnemar.p_clustered >= 0.05) && !a.comparisons.is_empty() {
        out.push("no pair of models differs significantly in accuracy (clustered McNemar p ≥ 0.05).".to_owned());
    }
    for m in &a.models {
        if let Some((r, d)) = m.image_reliance.as_ref().and_then(|r| Some((r, r.consistent_not_reliant.share.as_ref()?))) {
            out.push(format!(
                "`{}`: {} of {} studies are consistent but not image-reliant (same answers with a blank image), the dangerous quadrant: {}.",
                m.model,
                r.consistent_not_reliant.studies,
                r.studies,
                pct(Some(d))
            ));
        }
    }
    // A confound whose hiding changes answers with an interval clear of 0: the model answers
    // (partly) from the named shortcut.
    for m in &a.models {
        if let Some(i) = m.conditions.as_ref().and_then(|c| c.confound_change_rate.as_ref()).filter(|i| i.lo > 0.0) {
            out.push(format!(
                "`{}` answers from the confound the CSV names: hiding that box changes {} of its answers (`confound_occluded`).",
                m.model,
                pct(Some(i))
            ));
        }
    }
    // The prior conditions: an interval clear of 0 says the model reads the prior; no change
    // at all says nothing shows that it does (its answers about change cannot be about change).
    for m in &a.models {
        let Some(c) = m.conditions.as_ref() else { continue };
        for (rate, condition) in
            [(&c.prior_blank_change_rate, ImageCondition::PriorBlank), (&c.prior_swap_change_rate, ImageCondition::PriorSwap)]
        {
            let Some(i) = rate.as_ref() else { continue };
            let rows = c.conditions.iter().find(|s| s.condition == condition).map_or(0, |s| s.rows);
            if i.lo > 0.0 {
                out.push(format!(
                    "`{}` reads the prior image: replacing it (`{condition}`) changes {} of its answers.",
                    m.model,
                    pct(Some(i))
                ));
            } else if i.estimate == 0.0 {
                out.push(format!(
                    "Replacing the prior image (`{condition}`) changes none of `{}`'s {rows} answers: nothing shows that it reads the prior.",
                    m.model
                ));
            }
        }
    }
    out
}

fn per_model(o: &mut String, a: &Analysis) {
    let _ = writeln!(o, "## Per model\n");
    let _ = writeln!(o, "Estimate [lower, upper] of the {} interval; rates over answered rows (errors excluded).\n", level(a));
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .map(|m| {
            vec![
                format!("`{}`", m.model),
                m.rows.to_string(),
                m.answered.to_string(),
                m.errors.to_string(),
                m.studies.to_string(),
                interval(m.accuracy.as_ref()),
                interval(m.flip_rate.as_ref()),
                interval(m.full_consistency.as_ref()),
                interval(m.blank_image_accuracy.as_ref()),
            ]
        })
        .collect();
    table(o, &["model", "rows", "answered", "errors", "studies", "accuracy", "flip rate", "full consistency", "text-only accuracy"], &rows);
    let max_k = a.models.iter().flat_map(|m| m.cs_k.keys().copied()).max().unwrap_or(0);
    if max_k > 0 {
        let _ = writeln!(
            o,
            "Consensus score `cs_k` (chance that k variants drawn from a study are all correct; `cs_1` is study-weighted accuracy):\n"
        );
        let header: Vec<String> = std::iter::once("model".to_owned()).chain((1..=max_k).map(|k| format!("cs_{k}"))).collect();
        let rows: Vec<Vec<String>> = a
            .models
            .iter()
            .map(|m| std::iter::once(format!("`{}`", m.model)).chain((1..=max_k).map(|k| interval(m.cs_k.get(&k)))).collect())
            .collect();
        table(o, &header.iter().map(String::as_str).collect::<Vec<_>>(), &rows);
    }
}

fn level(a: &Analysis) -> String {
    let l = a.models.iter().find_map(|m| m.accuracy.as_ref().map(|i| i.level)).unwrap_or(0.95);
    format!("{:.0}%", 100.0 * l)
}

fn group_rows(
    a: &Analysis,
    pick: fn(&ModelAnalysis) -> &std::collections::BTreeMap<String, GroupStats>,
    consistency: bool,
) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for m in &a.models {
        for (name, g) in pick(m) {
            let mut r = vec![
                format!("`{}`", m.model),
                name.clone(),
                g.studies.to_string(),
                g.rows.to_string(),
                interval(g.accuracy.as_ref()),
                interval(g.flip_rate.as_ref()),
            ];
            if consistency {
                r.push(interval(g.full_consistency.as_ref()));
            }
            rows.push(r);
        }
    }
    rows
}

fn strategies(o: &mut String, a: &Analysis) {
    let rows = group_rows(a, |m| &m.by_strategy, false);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(o, "## Per rephrasing strategy\n");
    let _ = writeln!(
        o,
        "Flip rate of a strategy: its (base, variant) pairs whose polarity-adjusted answers differ; the base question's own strategy has none.\n"
    );
    table(o, &["model", "strategy", "studies", "rows", "accuracy", "flip rate"], &rows);
}

fn findings(o: &mut String, a: &Analysis) {
    let only_none = a.models.iter().all(|m| m.by_finding.keys().all(|k| k == NO_FINDING));
    if only_none {
        return;
    }
    let _ = writeln!(o, "## Per finding\n");
    table(
        o,
        &["model", "finding", "studies", "rows", "accuracy", "flip rate", "full consistency"],
        &group_rows(a, |m| &m.by_finding, true),
    );
}

fn reliance(o: &mut String, a: &Analysis) {
    if a.models.iter().all(|m| m.image_reliance.is_none()) {
        return;
    }
    let _ = writeln!(o, "## Image reliance (text-only pass)\n");
    let _ = writeln!(
        o,
        "A row is image-reliant when its answer changes when the image is replaced by a blank one. A study is *consistent* when all its polarity-adjusted answers agree, and *image-reliant* when at least one of its rows changes without the image. **Consistent and not image-reliant** is the dangerous quadrant: answers that look robust but ignore the image.\n"
    );
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .filter_map(|m| {
            let r = m.image_reliance.as_ref()?;
            let q = |s: &radlens_shared::record::QuadrantShare| format!("{} ({})", s.studies, interval(s.share.as_ref()));
            Some(vec![
                format!("`{}`", m.model),
                r.rows.to_string(),
                interval(r.rate.as_ref()),
                r.studies.to_string(),
                q(&r.consistent_reliant),
                format!("**{}**", q(&r.consistent_not_reliant)),
                q(&r.inconsistent_reliant),
                q(&r.inconsistent_not_reliant),
            ])
        })
        .collect();
    table(
        o,
        &[
            "model",
            "rows",
            "image reliance",
            "studies",
            "consistent & reliant",
            "consistent & NOT reliant (dangerous)",
            "inconsistent & reliant",
            "inconsistent & not reliant",
        ],
        &rows,
    );
}

fn comparisons(o: &mut String, a: &Analysis) {
    if a.comparisons.is_empty() {
        return;
    }
    let _ = writeln!(o, "## Paired comparisons (McNemar)\n");
    let _ = writeln!(
        o,
        "On the rows both models answered. b: A right and B wrong; c: the reverse. The clustered test (Durkalski) allows for rows of one study being correlated; the exact test does not.\n"
    );
    let rows: Vec<Vec<String>> = a
        .comparisons
        .iter()
        .map(|c| {
            vec![
                format!("`{}`", c.model_a),
                format!("`{}`", c.model_b),
                c.rows.to_string(),
                c.studies.to_string(),
                num(c.accuracy_a, 3),
                num(c.accuracy_b, 3),
                interval(c.accuracy_difference.as_ref()),
                c.mcnemar.b.to_string(),
                c.mcnemar.c.to_string(),
                format!("{:.3}", c.mcnemar.chi2),
                format!("{:.4}", c.mcnemar.p_clustered),
                format!("{:.4}", c.mcnemar.p_exact),
            ]
        })
        .collect();
    table(o, &["A", "B", "rows", "studies", "acc A", "acc B", "A − B", "b", "c", "Durkalski χ²", "p clustered", "p exact"], &rows);
}

/// Multi-image rows (issue 21): how each model's attention divides between the images.
fn image_roles(o: &mut String, a: &Analysis) {
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .flat_map(|m| {
            m.images.iter().map(|(role, s)| {
                vec![
                    cell(&m.model),
                    cell(role),
                    s.records.to_string(),
                    mean_median(s.mass_share.as_ref(), 3),
                    mean_median(s.entropy_nats.as_ref(), 2),
                    mean_median(s.focus.as_ref(), 3),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "## Several images per row
"
    );
    let _ = writeln!(
        o,
        "Per image role, mean / median over the image-pass records of rows with more than one image: the image's share of the attention mass on all image tokens, and its own map's entropy and focus.\n"
    );
    table(o, &["model", "image", "records", "mass share", "entropy (nats)", "focus"], &rows);
    // The other methods' maps split the same way: a line per (model, method, image role).
    let methods: Vec<Vec<String>> = a
        .models
        .iter()
        .flat_map(|m| {
            let mut by_method: BTreeMap<&str, Vec<(&str, &Summary)>> = BTreeMap::new();
            for (role, s) in &m.images {
                for (method, share) in &s.methods {
                    by_method.entry(method).or_default().push((role, share));
                }
            }
            by_method.into_iter().flat_map(move |(method, roles)| {
                roles.into_iter().map(move |(role, share)| {
                    vec![cell(&m.model), format!("`{method}`"), cell(role), share.n.to_string(), mean_median(Some(share), 3)]
                })
            })
        })
        .collect();
    if !methods.is_empty() {
        let _ = writeln!(
            o,
            "\nThe other methods' maps, split per image the same way: the image's share of the Grad-CAM mass, of the relative map's mass over all image tokens, and of the occlusion support (answer drops when its cells are hidden, the others intact).\n"
        );
        table(o, &["model", "method", "image", "records", "mass share"], &methods);
    }
}

fn maps(o: &mut String, a: &Analysis) {
    if a.models.iter().all(|m| m.maps.is_none()) {
        return;
    }
    let _ = writeln!(o, "## Attention maps\n");
    let _ = writeln!(
        o,
        "Mean / median over the image-pass maps (uniform fallbacks left out). Map consistency: per study, the mean pairwise `1 − JS distance` of its variants' maps.\n"
    );
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .filter_map(|m| {
            let s = m.maps.as_ref()?;
            let methods = s.methods.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
            Some(vec![
                format!("`{}`", m.model),
                format!("{} ({methods})", s.maps),
                mean_median(Some(&s.focus), 3),
                mean_median(Some(&s.gini), 3),
                mean_median(Some(&s.top10_mass), 3),
                mean_median(Some(&s.image_share), 3),
                mean_median(m.map_consistency.as_ref(), 3),
            ])
        })
        .collect();
    table(o, &["model", "maps", "focus", "Gini", "top-10% mass", "image share", "map consistency"], &rows);

    let roi: Vec<Vec<String>> = a
        .models
        .iter()
        .filter_map(|m| {
            let r = m.maps.as_ref()?.roi.as_ref()?;
            Some(vec![
                format!("`{}`", m.model),
                r.rows.to_string(),
                interval(r.relevance_mass.as_ref()),
                interval(r.rank_accuracy.as_ref()),
                interval(r.pointing_game.as_ref()),
            ])
        })
        .collect();
    if !roi.is_empty() {
        let _ = writeln!(o, "Against the radiologists' boxes (rows with a box):\n");
        table(o, &["model", "rows", "relevance mass", "rank accuracy", "pointing game"], &roi);
    }

    let flips: Vec<Vec<String>> = a
        .models
        .iter()
        .filter_map(|m| {
            let f = m.flipped_vs_stable.as_ref()?;
            Some(vec![
                format!("`{}`", m.model),
                format!("{} / {}", f.flipped.rows, f.stable.rows),
                format!("{} vs {}", mean_median(f.flipped.focus.as_ref(), 3), mean_median(f.stable.focus.as_ref(), 3)),
                format!("{} vs {}", mean_median(f.flipped.gini.as_ref(), 3), mean_median(f.stable.gini.as_ref(), 3)),
                format!("{} vs {}", mean_median(f.flipped.top10_mass.as_ref(), 3), mean_median(f.stable.top10_mass.as_ref(), 3)),
            ])
        })
        .collect();
    if !flips.is_empty() {
        let _ = writeln!(
            o,
            "Flipped vs stable rephrasings (mean / median; variants whose polarity-adjusted answer differs from the base vs those that agree):\n"
        );
        table(o, &["model", "rows flipped / stable", "focus", "Gini", "top-10% mass"], &flips);
    }

    let cross: Vec<Vec<String>> = a
        .cross_model
        .iter()
        .map(|c| {
            vec![
                format!("`{}`", c.model_a),
                format!("`{}`", c.model_b),
                format!("{0}x{0}", c.grid),
                c.rows.to_string(),
                mean_median(c.js_divergence.as_ref(), 3),
                mean_median(c.js_distance.as_ref(), 3),
            ]
        })
        .collect();
    if !cross.is_empty() {
        let _ = writeln!(
            o,
            "Cross-model divergence of the maps of the same question, each resampled by area onto the common grid over the whole image (bits; 0 = identical, 1 = disjoint):\n"
        );
        table(o, &["A", "B", "grid", "rows", "JS divergence", "JS distance"], &cross);
    }
}

/// Grad-CAM, faithfulness and sinks, when the run made those checks.
fn trust(o: &mut String, a: &Analysis) {
    let models: Vec<_> = a.models.iter().filter_map(|m| Some((m.model.as_str(), m.trust.as_ref()?))).collect();
    if models.is_empty() {
        return;
    }
    let _ = writeln!(o, "## Can the maps be trusted?\n");
    let _ = writeln!(
        o,
        "Maps by other methods of the same questions: Grad-CAM of `logit(yes) − logit(no)` at the vision block named in each map's provenance, and the relative map (the question's attention over the attention of \"{}\"). Fallback maps stand in where attention could not be captured and are labelled.\n",
        radlens_shared::trust::GENERIC_PROMPT
    );
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|(name, t)| {
            let methods = t.methods.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
            vec![format!("`{name}`"), t.records.to_string(), methods, t.fallbacks.to_string(), t.records_with_notes.to_string()]
        })
        .collect();
    table(o, &["model", "records checked", "maps per method", "fallback maps", "records with a failed check"], &rows);

    let agreement: Vec<Vec<String>> = models
        .iter()
        .flat_map(|(name, t)| {
            t.agreement.iter().map(move |p| {
                vec![
                    format!("`{name}`"),
                    format!("{} vs {}", p.a, p.b),
                    p.rows.to_string(),
                    interval(p.mean_js_distance.as_ref()),
                    mean_median(Some(&p.js_distance), 3),
                ]
            })
        })
        .collect();
    if !agreement.is_empty() {
        let _ = writeln!(o, "### Method agreement\n");
        let _ =
            writeln!(o, "Jensen-Shannon distance (bits, 0 = the same map, 1 = disjoint) between two methods' maps of the same record.\n");
        table(o, &["model", "methods", "rows", "mean JS distance [CI]", "mean / median"], &agreement);
    }

    let faithfulness: Vec<Vec<String>> = models
        .iter()
        .flat_map(|(name, t)| {
            t.faithfulness.iter().map(move |f| {
                vec![
                    format!("`{name}`"),
                    f.method.to_string(),
                    format!("{}%", f.k_percent),
                    f.rows.to_string(),
                    format!("{} ({})", f.flagged, pct(f.flag_rate.as_ref())),
                    mean_median(Some(&f.delta_top), 3),
                    mean_median(Some(&f.delta_random), 3),
                ]
            })
        })
        .collect();
    if !faithfulness.is_empty() {
        let _ = writeln!(o, "### Faithfulness (deletion)\n");
        let _ = writeln!(
            o,
            "Each map's top k% cells are deleted (their pixels set to the image's per-channel mean) and the change in the yes/no margin is compared with deleting as many random cells (mean of seeded draws). A map is flagged when its top cells move the margin no more than random ones: `|Δtop| ≤ |Δrandom|`.\n"
        );
        table(
            o,
            &["model", "method", "k", "rows", "flagged", "Δ margin, top cells (mean / median)", "Δ margin, random cells"],
            &faithfulness,
        );
    }

    let sinks: Vec<Vec<String>> = models
        .iter()
        .filter_map(|(name, t)| {
            let s = t.sinks.as_ref()?;
            Some(vec![
                format!("`{name}`"),
                format!("{} of {}", s.studies_with_sinks, s.studies),
                mean_median(Some(&s.cells), 2),
                mean_median(Some(&s.mass), 3),
                mean_median(s.focus.as_ref(), 3),
                mean_median(s.focus_without.as_ref(), 3),
            ])
        })
        .collect();
    if !sinks.is_empty() {
        let _ = writeln!(o, "### Attention sinks\n");
        let _ = writeln!(
            o,
            "Image cells holding more than {}x the uniform share in every variant's map of a study and in the generic prompt's map: they take attention whatever the question. Focus with and without them (zeroed, map renormalised).\n",
            radlens_shared::trust::SINK_FACTOR
        );
        table(o, &["model", "studies with sinks", "sink cells per study", "mass on sinks", "focus", "focus without sinks"], &sinks);
    }
}

fn margins_latency(o: &mut String, a: &Analysis) {
    let margins: Vec<Vec<String>> = a
        .models
        .iter()
        .filter_map(|m| {
            let y = m.yes_no_margin.as_ref()?;
            Some(vec![
                format!("`{}`", m.model),
                y.all.n.to_string(),
                mean_median(Some(&y.all), 2),
                mean_median(y.correct.as_ref(), 2),
                mean_median(y.wrong.as_ref(), 2),
            ])
        })
        .collect();
    if !margins.is_empty() {
        let _ = writeln!(o, "## Answer margins\n");
        let _ = writeln!(o, "`logit(yes) − logit(no)` at the first answer position, mean / median.\n");
        table(o, &["model", "rows", "all", "correct", "wrong"], &margins);
    }
    let _ = writeln!(o, "## Latency\n");
    let _ = writeln!(
        o,
        "Milliseconds per row, mean / median / p95 (errors excluded; work shared by a study's variants is recorded on its first variant).\n"
    );
    let f = |s: Option<&Summary>| s.map_or_else(|| "–".to_owned(), |s| format!("{:.1} / {:.1} / {:.1}", s.mean, s.median, s.p95));
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .map(|m| {
            let l = &m.latency;
            vec![
                format!("`{}`", m.model),
                f(l.image_encode_ms.as_ref()),
                f(l.prefill_ms.as_ref()),
                f(l.decode_ms.as_ref()),
                f(l.capture_ms.as_ref()),
                f(l.total_ms.as_ref()),
            ]
        })
        .collect();
    table(o, &["model", "image encode", "prefill", "decode", "capture", "total"], &rows);
}

fn figures(o: &mut String, plots: &[String]) {
    let _ = writeln!(o, "## Figures\n");
    let plain: Vec<&String> =
        plots.iter().filter(|p| !is_overlay(p) && !grounding::is_section_plot(p) && !conditions::is_section_plot(p)).collect();
    if plain.is_empty() {
        let _ = writeln!(o, "No figures were drawn.\n");
    }
    for p in plain {
        let name = Path::new(p).file_stem().map_or_else(String::new, |s| s.to_string_lossy().replace('_', " "));
        let _ = writeln!(o, "![{name}]({p})\n");
    }
}

fn is_overlay(p: &str) -> bool {
    Path::new(p).file_name().is_some_and(|n| n.to_string_lossy().starts_with("overlay_"))
}

fn disagreeing(o: &mut String, a: &Analysis, plots: &[String]) {
    let _ = writeln!(o, "## Most disagreeing studies\n");
    let _ = writeln!(
        o,
        "Ranked by flips (summed over models) plus variants the models answered differently, then by mean cross-model JS distance.\n"
    );
    let rows: Vec<Vec<String>> = a
        .disagreements
        .iter()
        .take(TOP_STUDIES)
        .enumerate()
        .map(|(i, d)| {
            let per_model = a
                .studies
                .iter()
                .filter(|s| s.study_id == d.study_id)
                .map(|s| format!("{}: {}/{} correct, {} flips", s.model, s.correct, s.answered, s.flips))
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                (i + 1).to_string(),
                format!("`{}`", d.study_id),
                d.finding.clone().unwrap_or_else(|| "–".to_owned()),
                d.flips.to_string(),
                d.answer_disagreements.to_string(),
                num(d.mean_js_distance, 3),
                per_model,
            ]
        })
        .collect();
    table(o, &["#", "study", "finding", "flips", "answer disagreements", "mean JS distance", "per model"], &rows);
    let overlays: Vec<&String> = plots.iter().filter(|p| is_overlay(p)).collect();
    if overlays.is_empty() {
        let _ = writeln!(
            o,
            "No overlay figures: run `radlens report RUN_DIR --images DIR` with the folder the study CSV's image paths are relative to.\n"
        );
    }
    for p in overlays {
        let _ = writeln!(o, "![overlay]({p})\n");
    }
}

// ---------------------------------------------------------------------------------------------
// records.csv

/// The columns of `records.csv`, in order (shared with the dashboard's CSV download).
pub use radlens_shared::records_csv::COLUMNS as CSV_COLUMNS;

/// Writes `records.csv`: one row per record (deduplicated and sorted as the analysis reads
/// them), the map columns empty where a record has no map and the answer columns empty for an
/// error record. Returns its path.
pub fn write_records_csv(dir: &RunDir, records: &[CaseRecord]) -> Result<PathBuf> {
    let path = dir.path(RECORDS_CSV);
    let (records, _) = dedupe_and_sort(records);
    let csv = records_csv::to_csv(CSV_COLUMNS, records.iter().map(records_csv::record_row));
    write_atomic(&path, csv.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::analysis::{analyze, fixture};
    use crate::study::run_dir::ANALYSIS;

    #[test]
    fn report_command_rebuilds_every_output_from_the_records() {
        let (dir, images) = fixture::write_run("report", 7);
        let out = crate::commands::report::regenerate(dir.root(), Some(&images)).unwrap();
        for p in [&out.analysis_json, &out.records_csv, &out.report] {
            assert!(std::fs::metadata(p).unwrap().len() > 100, "{}", p.display());
        }
        assert_eq!(out.plots.len(), 12);
        let report = std::fs::read_to_string(&out.report).unwrap();
        assert!(report.contains("WARNING: random weights (pipeline demo)"), "{report}");
        // The summary comes first, before the tables.
        let summary = report.find("## Summary").unwrap();
        assert!(summary < report.find("## Per model").unwrap());
        assert!(report.contains("0.778 ["), "A's accuracy 7/9 with its interval");
        assert!(report.contains("**error records: 1**"));
        assert!(report.contains("## Paired comparisons (McNemar)"));
        assert!(report.contains("(plots/rates_by_model.png)") && report.contains("(plots/overlay_1_s3.png)"));
        assert!(report.contains("consistent & NOT reliant (dangerous)"));
        assert!(report.contains("the least robust rephrasing is"));

        // analysis.json is what `analyze` computes, and a second run writes the same bytes.
        let json = std::fs::read_to_string(dir.path(ANALYSIS)).unwrap();
        assert_eq!(json, serde_json::to_string_pretty(&analyze(&dir).unwrap()).unwrap());
        crate::commands::report::regenerate(dir.root(), Some(&images)).unwrap();
        assert_eq!(json, std::fs::read_to_string(dir.path(ANALYSIS)).unwrap());
        assert_eq!(report, std::fs::read_to_string(&out.report).unwrap());
    }

    #[test]
    fn records_csv_has_one_row_per_record() {
        let (dir, _) = fixture::write_run("csv", 7);
        let path = write_records_csv(&dir, &dir.read_records().unwrap()).unwrap();
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header, CSV_COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        // 28 lines less the duplicate.
        assert_eq!(rows.len(), 27);
        let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
        let error = rows.iter().find(|r| !r[col("error")].is_empty()).unwrap();
        assert_eq!((&error[col("sample_id")], &error[col("model")], &error[col("error_stage")]), ("s3#1", "model-b", "inference"));
        assert_eq!(&error[col("parsed_answer")], "");
        let negated =
            rows.iter().find(|r| &r[col("sample_id")] == "s1#2" && &r[col("model")] == "model-a" && &r[col("pass")] == "image").unwrap();
        assert_eq!((&negated[col("polarity")], &negated[col("ground_truth")], &negated[col("correct")]), ("-1", "no", "true"));
        assert!(negated[col("relevance_mass")].parse::<f64>().is_ok());
        let blank = rows.iter().filter(|r| &r[col("pass")] == "blank_image").count();
        assert_eq!(blank, 9);
    }

    #[test]
    fn no_warning_without_random_weights() {
        let (dir, _) = fixture::write_run("report-real", 7);
        let mut manifest = dir.read_manifest().unwrap();
        for m in &mut manifest.models {
            m.random_weights = false;
        }
        dir.write_manifest(&manifest).unwrap();
        let a = analyze(&dir).unwrap();
        assert!(!a.random_weights);
        let text = render_report(&manifest, &a, &[]);
        assert!(!text.contains("random weights"), "{text}");
        assert!(text.contains("No overlay figures"));
    }
}
