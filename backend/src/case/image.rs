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
    /// What replaces the prompt's image tokens: `[image_tokens, hidden]`, or `[rows, cols,
    /// hidden]` for models whose grid follows the image (Qwen2.5-VL).
    pub features: Tensor,
    /// `[1, C, H, W]`: the pixels, for Grad-CAM and the deletion tests (`H == W` for every model
    /// but Qwen2.5-VL).
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
        // The map's grid is this image's: fixed for most models, per image for Qwen2.5-VL.
        let (h, w) = engine.model.image_grid(&pixels).map_err(EncodeError::Encode)?;
        let geometry = MapGeometry { h, w, crop: pre.crop, image_w: pre.image_w, image_h: pre.image_h };
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

    /// The geometry of stored pixels `[1, C, H, W]` without an image: the input itself.
    pub fn input_geometry(engine: &Engine, pixels: &Tensor) -> Result<MapGeometry> {
        let (h, w) = engine.model.image_grid(pixels)?;
        let (height, width) = (pixels.dim(2)? as u32, pixels.dim(3)? as u32);
        Ok(MapGeometry { h, w, crop: PixelBox::image(width, height)?, image_w: width, image_h: height })
    }

    /// The image-token count of the prompt for this image (`rows x cols` of its map grid).
    pub fn image_tokens(&self) -> usize {
        self.geometry.h * self.geometry.w
    }

    /// The same encoding, counted as free (a second use of an image already encoded).
    pub fn reused(&self) -> Self {
        Self { preprocess_ms: 0.0, encode_ms: 0.0, ..self.clone() }
    }
}

pub(crate) fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
