//! The study page's grounding parts: per card, a record's grounding figures per map method
//! (occlusion agreement, box controls, box score) and its null edits with its study's
//! paraphrase-to-null ratio ([`grounding_panel`]); the G2 boxes drawn on an overlay
//! ([`draw_boxes`]) and their legend ([`boxes_legend`]). Their view model, and the one table of
//! what each figure means (the hover titles), is [`crate::grounding`].

use leptos::prelude::*;
use radlens_shared::record::CaseRecord;
use radlens_shared::views::NullEditFlags;

use crate::grounding::{BoxKind, Cell, Figure, OverlayBoxes, box_on_bitmap, map_cell, meaning, null_edit_cells, null_study_cells};
use crate::methods::method_label;

/// The null-edit view of a study's records (`None` while its maps load, or without null edits).
pub type NullView = Memo<Option<Result<NullEditFlags, String>>>;

fn cell_td(f: Figure, c: Cell) -> impl IntoView {
    view! {
        <td class="num" data-figure=f.key() data-value=c.raw.map(|v| format!("{v:e}")).unwrap_or_default() title=meaning(f)>
            {c.text}
        </td>
    }
}

fn figure_th(f: Figure) -> impl IntoView {
    view! { <th scope="row" title=meaning(f) data-figure=f.key()>{f.label()}</th> }
}

/// The grounding figures of one record as the run stored them (nothing for a run made without
/// `--grounding`). `nulls` gives its study's paraphrase-to-null comparison for its model.
pub fn grounding_panel(index: usize, record: &CaseRecord, nulls: NullView) -> Option<AnyView> {
    let g = record.grounding.as_ref()?;
    let methods: Vec<_> = g.maps.iter().map(|m| m.method).collect();
    let head =
        methods.iter().map(|m| view! { <th class="num" scope="col" data-method=m.to_string()>{method_label(*m)}</th> }).collect_view();
    // One row per figure any map has (a run without boxes shows only the occlusion rows).
    let rows = Figure::MAP_ROWS
        .into_iter()
        .filter(|&f| g.maps.iter().any(|m| present(&m.figures, f)))
        .map(|f| {
            let cells = g.maps.iter().map(|m| cell_td(f, map_cell(&m.figures, f))).collect_view();
            view! { <tr data-figure=f.key()>{figure_th(f)}{cells}</tr> }
        })
        .collect_view();
    let own = record.map.as_ref().map(|m| m.provenance.method);
    let edits = radlens_shared::views::own_null_edits(record).to_vec();
    let edits_table = (!edits.is_empty()).then(|| null_edit_tables(record, own, edits, nulls));
    let notes = g.notes.clone();
    let support = g.occlusion.as_ref().map(|o| {
        let input = match o.input_hw {
            Some((h, w)) => format!("{h} x {w}-pixel"),
            None => format!("{}-pixel", o.input_side),
        };
        format!(
            "Occlusion: {0} x {0} cells of the {input} model input, each hidden in turn; support = how much hiding it weakens the model's own answer (margin {1:.3}).",
            o.grid, o.margin
        )
    });
    Some(
        view! {
            <section class="grounding" data-testid="grounding" data-index=index.to_string()>
                <h4>"Does the map point where the decision comes from?"</h4>
                {support.map(|s| view! { <p class="help">{s}</p> })}
                {(!methods.is_empty()).then(|| view! {
                    <table class="grounding-maps" data-testid="grounding-maps">
                        <caption>"Per map (hover a name or number for its meaning; — = not defined for this map)"</caption>
                        <thead><tr><th>"figure"</th>{head}</tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                })}
                {edits_table}
                {(!notes.is_empty()).then(|| view! {
                    <ul class="trust-notes">{notes.into_iter().map(|n| view! { <li>{format!("not computed: {n}")}</li> }).collect_view()}</ul>
                })}
            </section>
        }
        .into_any(),
    )
}

/// The record's null edits (answer equal, margin delta, map JS distance per edit) and, beside
/// them, its study's comparison for its model (paraphrase JS, null JS, ratio, verdict per edit),
/// computed from the study's stored maps once they are loaded.
fn null_edit_tables(
    record: &CaseRecord,
    own: Option<radlens_shared::fusion::MapMethod>,
    edits: Vec<radlens_shared::grounding::NullEditRecord>,
    nulls: NullView,
) -> impl IntoView {
    let th = |f: Figure| view! { <th class="num" scope="col" title=meaning(f) data-figure=f.key()>{f.label()}</th> };
    let record_rows = edits
        .iter()
        .map(|e| {
            view! {
                <tr data-edit=e.edit.name()>
                    <th scope="row">{e.edit.name()}</th>
                    {null_edit_cells(e).into_iter().map(|(f, c)| cell_td(f, c)).collect_view()}
                </tr>
            }
        })
        .collect_view();
    let key = (record.study_id.clone(), record.model.clone());
    let study_rows = move || {
        nulls.with(|v| match v {
            None => view! { <tr><td colspan="5">"measuring from the study's stored maps…"</td></tr> }.into_any(),
            Some(Err(e)) => view! { <tr><td colspan="5" class="error">{format!("could not be computed: {e}")}</td></tr> }.into_any(),
            Some(Ok(v)) => v
                .studies
                .get(&key)
                .into_iter()
                .flatten()
                .map(|s| {
                    let flagged = s.paraphrase_to_null.map(|_| s.flagged.to_string()).unwrap_or_default();
                    let cells = null_study_cells(s).into_iter().map(|(f, c)| cell_td(f, c)).collect_view();
                    view! { <tr data-edit=s.edit.name() data-flagged=flagged class:flagged=s.flagged><th scope="row">{s.edit.name()}</th>{cells}</tr> }
                })
                .collect_view()
                .into_any(),
        })
    };
    view! {
        <table class="null-edits" data-testid="null-edits">
            <caption>{format!(
                "Null edits of the {} map (the image changed, its meaning did not)",
                own.map(method_label).unwrap_or("own")
            )}</caption>
            <thead><tr>
                <th>"edit"</th>
                {[Figure::NullAnswerEqual, Figure::NullMarginDelta, Figure::NullJsDistance].map(th)}
            </tr></thead>
            <tbody>{record_rows}</tbody>
        </table>
        <table class="null-study" data-testid="null-study">
            <caption>{format!("This study, {}: rewording against null edits (JS distances in bits)", record.model)}</caption>
            <thead><tr>
                <th>"edit"</th>
                {[Figure::ParaphraseJs, Figure::StudyNullJs, Figure::ParaphraseToNull, Figure::NullEditFlag].map(th)}
            </tr></thead>
            <tbody>{study_rows}</tbody>
        </table>
    }
}

/// Whether any part behind a figure was computed for this map (a row of dashes for a run
/// without boxes is left out).
fn present(g: &radlens_shared::grounding::GroundingRecord, f: Figure) -> bool {
    match f {
        Figure::OcclusionSpearman | Figure::OcclusionTopkOverlap | Figure::OcclusionSupportMass => g.occlusion.is_some(),
        Figure::BoxIou | Figure::BoxPrecision | Figure::BoxRecall | Figure::BoxF1 => g.box_score.is_some(),
        _ => g.box_controls.is_some(),
    }
}

/// Draws `boxes` on an overlay canvas already painted for a map over `crop` (its bitmap covers
/// exactly the crop), each kind in its [`BoxKind::style`]; line widths are in CSS pixels of the
/// canvas as laid out, so they look the same at any bitmap size.
pub fn draw_boxes(
    canvas: &web_sys::HtmlCanvasElement,
    crop: &radlens_shared::geometry::PixelBox,
    boxes: &OverlayBoxes,
) -> Result<(), wasm_bindgen::JsValue> {
    let ctx = context(canvas)?;
    let (pw, ph) = (canvas.width() as usize, canvas.height() as usize);
    let shown = canvas.get_bounding_client_rect().width();
    let per_css = if shown > 0.0 { pw as f64 / shown } else { 1.0 };
    for (kind, b) in boxes.all() {
        stroke_box(&ctx, kind, box_on_bitmap(&b, crop, pw, ph), per_css)?;
    }
    Ok(())
}

/// The legend of the boxes, with the number of control boxes on the shown map's grid. Each
/// swatch is a small canvas stroked by [`stroke_box`] in its kind's style, so the legend cannot
/// drift from the overlay (and needs no inline style, which the server's CSP refuses).
pub fn boxes_legend(n_controls: Option<usize>) -> impl IntoView {
    view! {
        <ul class="box-legend" data-testid="box-legend">
            {BoxKind::ALL.into_iter().map(|k| {
                let swatch = NodeRef::<leptos::html::Canvas>::new();
                Effect::new(move |_| {
                    if let Some(c) = swatch.get()
                        && let Err(e) = draw_swatch(&c, k)
                    {
                        leptos::logging::error!("could not draw the {} swatch: {e:?}", k.label());
                    }
                });
                let label = match (k, n_controls) {
                    (BoxKind::Control, Some(n)) => format!("{} ({n})", k.label()),
                    _ => k.label().to_owned(),
                };
                view! {
                    <li data-kind=k.key()>
                        <canvas node_ref=swatch class="swatch" width="28" height="14" aria-hidden="true"></canvas>
                        {label}
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

/// Strokes one box of `kind` on `ctx` at bitmap rectangle `(x, y, w, h)`, `per_css` bitmap
/// pixels per CSS pixel (so widths and dashes are in CSS pixels as laid out).
fn stroke_box(
    ctx: &web_sys::CanvasRenderingContext2d,
    kind: BoxKind,
    (x, y, w, h): (f64, f64, f64, f64),
    per_css: f64,
) -> Result<(), wasm_bindgen::JsValue> {
    let (colour, width, dash) = kind.style();
    let lw = (width * per_css).max(1.0);
    let pattern = js_sys::Array::new();
    for d in dash {
        pattern.push(&wasm_bindgen::JsValue::from_f64(d * per_css));
    }
    ctx.set_line_dash(&pattern)?;
    ctx.set_stroke_style_str(colour);
    ctx.set_line_width(lw);
    ctx.stroke_rect(x + lw / 2.0, y + lw / 2.0, (w - lw).max(0.0), (h - lw).max(0.0));
    ctx.set_line_dash(&js_sys::Array::new())
}

fn context(canvas: &web_sys::HtmlCanvasElement) -> Result<web_sys::CanvasRenderingContext2d, wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    Ok(canvas.get_context("2d")?.ok_or("the canvas has no 2d context")?.dyn_into::<web_sys::CanvasRenderingContext2d>()?)
}

/// A legend swatch: the kind's box around a dark square, at one bitmap pixel per CSS pixel.
fn draw_swatch(canvas: &web_sys::HtmlCanvasElement, kind: BoxKind) -> Result<(), wasm_bindgen::JsValue> {
    let ctx = context(canvas)?;
    let (w, h) = (f64::from(canvas.width()), f64::from(canvas.height()));
    ctx.clear_rect(0.0, 0.0, w, h);
    ctx.set_fill_style_str("#333");
    ctx.fill_rect(0.0, 0.0, w, h);
    stroke_box(&ctx, kind, (0.0, 0.0, w, h), 1.0)
}
