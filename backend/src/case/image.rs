//! An image as a model sees it: preprocessed pixels, their encoding, and the geometry that puts
//! the map's grid back on the X-ray. Encoded once and shared by every question about it.

use std::time::Instant;

use candle_core::{Device, Tensor};
use image::DynamicImage;
use radlens_shared::geometry::{MapGeometry, PixelBox};

use crate::models::error::Result;
use crate::models::loader::Engine;
use crate::models::probe::NoProbe;

/// One image, encoded for one model.
#[derive(Debug, Clone)]
pub struct CaseImage {
    /// `[image_tokens, hidden]`: what replaces the prompt's image tokens.
    pub features: Tensor,
    /// `[1, C, S, S]`: the pixels, for Grad-CAM and the deletion tests.
    pub pixels: Tensor,
    pub geometry: MapGeometry,
    pub preprocess_ms: f64,
    pub encode_ms: f64,
}

/// Why an image could not be made ready (the stage a study's error record names).
#[derive(Debug)]
pub enum EncodeError {
    Preprocess(crate::models::error::ModelError),
    Encode(crate::models::error::ModelError),
}

impl CaseImage {
    /// Preprocesses `image` as the model's processor does, and encodes it.
    pub fn encode(engine: &Engine, image: &DynamicImage, device: &Device) -> std::result::Result<Self, EncodeError> {
        let t = Instant::now();
        let pre = engine.image_processor.preprocess(image).map_err(EncodeError::Preprocess)?;
        let pixels = pre.to_tensor(device).map_err(|e| EncodeError::Preprocess(e.into()))?;
        let preprocess_ms = ms(t);
        let summary = engine.model.summary();
        let geometry = MapGeometry { h: summary.grid_h, w: summary.grid_w, crop: pre.crop, image_w: pre.image_w, image_h: pre.image_h };
        let mut out = Self::from_pixels(engine, pixels, geometry).map_err(EncodeError::Encode)?;
        out.preprocess_ms = preprocess_ms;
        Ok(out)
    }

    /// Encodes pixels that are already the model's input (`probe --pixel-values`), with the
    /// geometry the caller knows for them.
    pub fn from_pixels(engine: &Engine, pixels: Tensor, geometry: MapGeometry) -> Result<Self> {
        let t = Instant::now();
        let features = engine.model.encode_image(&pixels, &mut NoProbe)?;
        Ok(Self { features, pixels, geometry, preprocess_ms: 0.0, encode_ms: ms(t) })
    }

    /// The geometry of stored pixels of side `side` without an image: the input square itself.
    pub fn square_geometry(engine: &Engine, side: u32) -> std::result::Result<MapGeometry, radlens_shared::MetricError> {
        let summary = engine.model.summary();
        Ok(MapGeometry { h: summary.grid_h, w: summary.grid_w, crop: PixelBox::image(side, side)?, image_w: side, image_h: side })
    }

    /// The same encoding, counted as free (a second use of an image already encoded).
    pub fn reused(&self) -> Self {
        Self { preprocess_ms: 0.0, encode_ms: 0.0, ..self.clone() }
    }
}

pub(crate) fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
