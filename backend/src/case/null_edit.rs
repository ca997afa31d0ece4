//! Null edits (grounding spec G4): the original image changed in ways that mean nothing to a
//! reader (a JPEG re-encode at quality 90, a 10% contrast reduction), run through the same case.
//! A map that moves more under such an edit than under a rewording of the question is not
//! reading the image's content. The pixel math of `contrast90` and the figures are
//! `radlens_shared::grounding::null_edits`; this makes the edited images and re-runs the case.

use std::io::Cursor;

use candle_core::Device;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageFormat, RgbImage, RgbaImage};
use radlens_shared::AttentionMap;
use radlens_shared::answer::{Answer, parse_answer, yes_no_margin};
use radlens_shared::grounding::{NullEdit, NullEditRecord, contrast90, null_edit_record};

use super::image::{CaseImage, EncodeError};
use super::plan::{Capture, CasePlan, QueryRows};
use super::run::{CaseMap, fused_map, generate_captured};
use super::trust::{self, CaseInput};
use crate::models::loader::Engine;
use crate::models::processor::EncodedPrompt;
use crate::models::processor::tokenizer::TextTokenizer;

/// JPEG quality of the `jpeg90` edit.
pub const JPEG90_QUALITY: u8 = 90;

/// One null edit of an image, encoded for the model (or why it could not be).
#[derive(Debug, Clone)]
pub struct EditedImage {
    pub edit: NullEdit,
    pub image: Result<CaseImage, String>,
}

/// `image` under `edit`, in its own pixel format where the edit allows (8-bit gray, gray + alpha,
/// RGB, RGBA); other formats are first converted to 8-bit RGB, as the model's processor would.
pub fn edit_image(image: &DynamicImage, edit: NullEdit) -> Result<DynamicImage, String> {
    match edit {
        NullEdit::Contrast90 => contrast90_image(image),
        NullEdit::Jpeg90 => jpeg90_image(image),
    }
}

fn contrast90_image(image: &DynamicImage) -> Result<DynamicImage, String> {
    edit_8bit(image, |pixels, w, h, channels| contrast90(pixels, w, h, channels).map_err(|e| format!("contrast90: {e}")))
}

/// `image` with its interleaved 8-bit samples replaced by `edit(samples, width, height,
/// channels)`, in its own pixel format where it is 8-bit gray, gray + alpha or RGBA (else as
/// 8-bit RGB): the null edits and the occlusion conditions work on the image as stored.
pub fn edit_8bit(
    image: &DynamicImage,
    edit: impl Fn(&[u8], usize, usize, usize) -> Result<Vec<u8>, String>,
) -> Result<DynamicImage, String> {
    let (w, h) = (image.width(), image.height());
    let edit = |pixels: &[u8], channels: usize| edit(pixels, w as usize, h as usize, channels);
    let bad = || "the edited pixels do not fit the image".to_string();
    Ok(match image {
        DynamicImage::ImageLuma8(g) => DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, edit(g.as_raw(), 1)?).ok_or_else(bad)?),
        DynamicImage::ImageLumaA8(g) => DynamicImage::ImageLumaA8(GrayAlphaImage::from_raw(w, h, edit(g.as_raw(), 2)?).ok_or_else(bad)?),
        DynamicImage::ImageRgba8(c) => DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, edit(c.as_raw(), 4)?).ok_or_else(bad)?),
        other => {
            let rgb = other.to_rgb8();
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, edit(rgb.as_raw(), 3)?).ok_or_else(bad)?)
        }
    })
}

/// Baseline JPEG at quality 90, decoded again. JPEG has no alpha: an alpha channel is dropped
/// (gray stays gray).
fn jpeg90_image(image: &DynamicImage) -> Result<DynamicImage, String> {
    let flat = match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => image.clone(),
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
            DynamicImage::ImageLuma8(image.to_luma8())
        }
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let mut bytes = Vec::new();
    flat.write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, JPEG90_QUALITY)).map_err(|e| format!("jpeg90: encoding: {e}"))?;
    image::load(Cursor::new(bytes), ImageFormat::Jpeg).map_err(|e| format!("jpeg90: decoding: {e}"))
}

/// Every null edit of `image`, encoded for `engine` once (a study's variants share them).
pub fn encode_edits(engine: &Engine, image: &DynamicImage, device: &Device) -> Vec<EditedImage> {
    NullEdit::ALL
        .into_iter()
        .map(|edit| EditedImage {
            edit,
            image: edit_image(image, edit).and_then(|edited| {
                CaseImage::encode(engine, &edited, device).map_err(|e| match e {
                    EncodeError::Preprocess(e) | EncodeError::Encode(e) => format!("{edit}: {e}"),
                })
            }),
        })
        .collect()
}

/// The unedited case's answer, margin and map, which every edit is compared with.
pub(super) struct Unedited<'a> {
    pub answer: Answer,
    pub margin: Option<f64>,
    pub map: &'a CaseMap,
}

/// Re-runs the case on each edited image (the same prompt, plan and method) and compares it with
/// the unedited one. An edit that cannot be run is a note; the others are kept.
pub(super) fn rerun(
    input: &CaseInput<'_>,
    plan: &CasePlan,
    prompt: &EncodedPrompt,
    rows: &QueryRows,
    tokenizer: &TextTokenizer,
    unedited: Unedited<'_>,
    edits: &[EditedImage],
) -> (Vec<NullEditRecord>, Vec<String>) {
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    let g = unedited.map.own.provenance.geometry;
    let original = match AttentionMap::new(g.h, g.w, unedited.map.own.values.clone()) {
        Ok(m) => m,
        Err(e) => return (out, vec![format!("null edits: the record's map: {e}")]),
    };
    for e in edits {
        let result = e.image.as_ref().map_err(Clone::clone).and_then(|image| {
            let edited_input = CaseInput { pixel_values: &image.pixels, geometry: image.geometry, ..*input };
            let (generation, recorder) =
                generate_captured(input.model, plan, &image.features, prompt, rows, None, Capture::Map).map_err(|e| e.to_string())?;
            let answer = parse_answer(&tokenizer.decode(generation.answer_ids(), true).map_err(|e| e.to_string())?);
            let margin = yes_no_margin(generation.prompt_last_logits(), input.yes_ids, input.no_ids);
            // The same method as the unedited map: attention where it had attention, else the
            // same labelled fallback, so the distance compares like with like.
            let values = match &unedited.map.attention {
                Some(_) => {
                    let positions = plan.query_positions(rows, generation.answer_ids().len());
                    fused_map(plan, &recorder, &positions, prompt, image.geometry)?.own.values
                }
                None => {
                    let reason = unedited.map.own.provenance.fallback_reason.clone().unwrap_or_default();
                    trust::fallback_map(&edited_input, &unedited.map.own.provenance, &reason).values
                }
            };
            let edited = AttentionMap::new(g.h, g.w, values).map_err(|e| e.to_string())?;
            null_edit_record(e.edit, (unedited.answer, unedited.margin, &original), (answer, margin, &edited)).map_err(|e| e.to_string())
        });
        match result {
            Ok(r) => out.push(r),
            Err(msg) => notes.push(format!("null edit {}: {msg}", e.edit)),
        }
    }
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast90_keeps_the_format_and_pulls_pixels_to_the_mean() {
        let gray = DynamicImage::ImageLuma8(GrayImage::from_raw(2, 1, vec![0, 255]).unwrap());
        let out = edit_image(&gray, NullEdit::Contrast90).unwrap();
        assert_eq!(out.as_luma8().unwrap().as_raw(), &vec![13, 242]);
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_raw(1, 2, vec![0, 10, 20, 255, 100, 10, 40, 0]).unwrap());
        let out = edit_image(&rgba, NullEdit::Contrast90).unwrap();
        // Channel means 50, 10, 30, 127.5: 0 -> 5, 100 -> 95; 10 stays; 20 -> 21, 40 -> 39.
        assert_eq!(out.as_rgba8().unwrap().as_raw(), &vec![5, 10, 21, 242, 95, 10, 39, 13]);
    }

    #[test]
    fn jpeg90_changes_a_textured_image_a_little_and_keeps_its_size() {
        let pixels: Vec<u8> = (0..64 * 48).map(|i| ((i * 37) % 251) as u8).collect();
        let gray = DynamicImage::ImageLuma8(GrayImage::from_raw(64, 48, pixels.clone()).unwrap());
        let out = edit_image(&gray, NullEdit::Jpeg90).unwrap();
        assert_eq!((out.width(), out.height()), (64, 48));
        let back = out.to_luma8();
        assert_ne!(back.as_raw(), &pixels, "quality 90 is lossy on noise");
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_raw(4, 4, vec![128; 64]).unwrap());
        let flat = edit_image(&rgba, NullEdit::Jpeg90).unwrap();
        assert!(flat.as_rgb8().is_some(), "JPEG has no alpha channel");
        assert!(flat.to_rgb8().pixels().all(|p| p.0.iter().all(|&v| v.abs_diff(128) <= 1)), "a flat image stays flat");
    }
}
