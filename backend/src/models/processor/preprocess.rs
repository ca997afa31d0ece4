//! Image preprocessing for every model, as transformers' image processors with the PIL backend
//! do it: RGB conversion, a resize (shortest edge for CLIP / LLaVA and LLaVA-Rad, the whole image
//! stretched for Gemma3's SigLIP), a centre crop or none, rescale, normalisation; and reading the
//! image file. Each output also records which part of the original image it covers, so attention
//! over the patch grid can be drawn back onto the image the user gave.
//!
//! The resize uses the `image` crate's filters, not PIL's. The kernels are the same (PIL's
//! BICUBIC is Catmull-Rom, a = -0.5; BILINEAR is the triangle), but PIL rounds to 8 bits between
//! its horizontal and vertical passes and `image` does not, so a pixel can differ by about one
//! grey level. The tests measure that against the transformers reference.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use radlens_shared::geometry::PixelBox;
use serde::Deserialize;

use crate::models::error::{ModelError, Result};

/// The image-processor file of transformers 4.x checkpoints (and most hub models).
pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";
/// transformers 5.x writes the image-processor settings here, under [`IMAGE_PROCESSOR_KEY`].
pub const PROCESSOR_CONFIG: &str = "processor_config.json";
pub const IMAGE_PROCESSOR_KEY: &str = "image_processor";

/// `CLIPImageProcessor`'s defaults (OpenAI CLIP statistics), used where a config omits a field.
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
// The published digits, as configs write them; they parse to the same f32s.
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
const DEFAULT_SIZE: u32 = 224;

/// A `size` or `crop_size` field: an integer or a dict, as transformers accepts both.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Int(u32),
    Dict(RawSizeDict),
}

/// The dict form of a size. All keys are optional here so that resolving can say which
/// combination was wrong rather than serde's "did not match any variant".
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawSizeDict {
    pub shortest_edge: Option<u32>,
    pub longest_edge: Option<u32>,
    pub height: Option<u32>,
    pub width: Option<u32>,
}

/// `image_mean` / `image_std`: a per-channel list, or one number for every channel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawFloats {
    One(f32),
    Many(Vec<f32>),
}

/// The image-processor JSON as written. Missing fields (and `null`s) take `CLIPImageProcessor`'s
/// defaults when resolved; unknown fields are ignored because processors of other families carry
/// extra settings that do not concern CLIP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawImageProcessorConfig {
    pub image_processor_type: Option<String>,
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub size: Option<RawSize>,
    /// A PIL resampling code (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming).
    pub resample: Option<u32>,
    /// Unset: on for CLIP's processor, off for Gemma3's and SigLIP's (which have no crop step).
    pub do_center_crop: Option<bool>,
    pub crop_size: Option<RawSize>,
    pub do_rescale: bool,
    pub rescale_factor: Option<f64>,
    pub do_normalize: bool,
    pub image_mean: Option<RawFloats>,
    pub image_std: Option<RawFloats>,
    /// Qwen2-VL processors (hub style; transformers 5 writes them as `size`'s
    /// `shortest_edge` / `longest_edge`).
    pub min_pixels: Option<u64>,
    pub max_pixels: Option<u64>,
    pub patch_size: Option<u32>,
    pub merge_size: Option<u32>,
}

impl Default for RawImageProcessorConfig {
    /// `CLIPImageProcessor.__init__`'s defaults: every step on.
    fn default() -> Self {
        Self {
            image_processor_type: None,
            do_convert_rgb: true,
            do_resize: true,
            size: None,
            resample: None,
            do_center_crop: None,
            crop_size: None,
            do_rescale: true,
            rescale_factor: None,
            do_normalize: true,
            image_mean: None,
            image_std: None,
            min_pixels: None,
            max_pixels: None,
            patch_size: None,
            merge_size: None,
        }
    }
}

/// How the image is resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// `do_resize: false`.
    Off,
    /// The shorter side becomes this; the longer keeps the aspect ratio, truncated.
    ShortestEdge(u32),
    /// Both sides are set; the aspect ratio is not kept.
    Exact { height: u32, width: u32 },
    /// Qwen2-VL's dynamic resolution: each side rounded to a multiple of `factor`, the area kept
    /// within `min_pixels..=max_pixels` (see [`super::qwen25vl::smart_resize`]).
    Smart { factor: u32, min_pixels: u64, max_pixels: u64 },
}

/// The crop after resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crop {
    /// `do_center_crop: false`: the whole resized image is the output.
    Off,
    /// A centered window; where it is larger than the image, the outside is black (zero before
    /// rescaling), as transformers pads.
    Center { height: u32, width: u32 },
}

/// The final per-channel affine map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    Off,
    MeanStd { mean: [f32; 3], std: [f32; 3] },
}

/// Resampling filters, named after PIL's, with the `image` crate's equivalent kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos,
}

impl Filter {
    /// From PIL's integer code; `None` for BOX (4) and HAMMING (5), which `image` lacks.
    pub fn from_pil(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Nearest),
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            _ => None,
        }
    }

    pub fn to_image(self) -> FilterType {
        match self {
            Self::Nearest => FilterType::Nearest,
            Self::Bilinear => FilterType::Triangle,
            // PIL's bicubic uses a = -0.5, which is the Catmull-Rom spline.
            Self::Bicubic => FilterType::CatmullRom,
            Self::Lanczos => FilterType::Lanczos3,
        }
    }
}

/// A resolved image-processor configuration: every step decided, every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    /// Whether non-RGB images may be converted. Without it only 8-bit RGB images are accepted,
    /// since the vision tower needs three channels and transformers would not make them.
    pub convert_rgb: bool,
    pub resize: Resize,
    pub resample: Filter,
    pub crop: Crop,
    /// Multiplies the 0..=255 values; 1.0 when `do_rescale` is false.
    pub rescale_factor: f64,
    pub normalize: Normalize,
    /// MAIRA-2's `Maira2Processor._normalize_image` before everything else: PIL's greyscale
    /// `convert("L")`, a min-max stretch to 0..=255 truncated to 8 bits, back to RGB (so colour is
    /// lost). Set by the loader for MAIRA-2 (the image-processor JSON does not say it); its
    /// resize is then PIL's 8-bit resize, exactly.
    pub grey_stretch: bool,
}

/// One preprocessed image: the model input and where it lies on the original.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessedImage {
    /// `[3, height, width]`, channel-major (R, G, B planes), the model input.
    pub pixel_values: Vec<f32>,
    pub height: usize,
    pub width: usize,
    /// The region of the original image that the output covers, in original pixels. It extends
    /// past the image where the crop was larger than the resized image (the padded border).
    pub crop: PixelBox,
    pub image_w: u32,
    pub image_h: u32,
}

impl PreprocessedImage {
    /// The `[1, 3, H, W]` f32 batch the vision tower takes.
    pub fn to_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(&self.pixel_values, (1, 3, self.height, self.width), device)
    }
}

fn config_error(file: &Path, message: String) -> ModelError {
    ModelError::Config { file: file.to_path_buf(), message }
}

/// What a field should look like, appended to serde's errors, which for untagged enums only say
/// that nothing matched.
fn expected_form(field: &str) -> &'static str {
    match field {
        "size" => " (expected {\"shortest_edge\": N}, {\"height\": H, \"width\": W} or an integer)",
        "crop_size" => " (expected {\"height\": H, \"width\": W} or an integer)",
        "image_mean" | "image_std" => " (expected a list of 3 numbers or one number)",
        "resample" => " (expected a PIL resampling code: 0, 1, 2 or 3)",
        _ => "",
    }
}

impl RawImageProcessorConfig {
    /// Parses the image-processor object found in `file`; `prefix` is where that object sits in
    /// the file (`"image_processor."` or empty), so that errors name the field as the user sees
    /// it.
    fn from_json(value: &serde_json::Value, file: &Path, prefix: &str) -> Result<Self> {
        let object = value.as_object().ok_or_else(|| {
            let what = if prefix.is_empty() { "the file".to_string() } else { format!("`{}`", prefix.trim_end_matches('.')) };
            config_error(file, format!("{what} is not a JSON object"))
        })?;
        match Self::deserialize(value) {
            Ok(raw) => Ok(raw),
            Err(err) => {
                // serde_json's error does not name the field. Every field has a default, so a
                // one-key object fails exactly when that key's value is bad.
                let bad = object.iter().find_map(|(key, v)| {
                    let single = serde_json::Value::Object(std::iter::once((key.clone(), v.clone())).collect());
                    Self::deserialize(&single).err().map(|e| (key.clone(), e))
                });
                Err(match bad {
                    Some((key, e)) => config_error(file, format!("field `{prefix}{key}`: {e}{}", expected_form(&key))),
                    None => config_error(file, err.to_string()),
                })
            }
        }
    }

    /// Applies the defaults and checks the values. `file` and `prefix` only serve the errors.
    fn resolve_in(&self, file: &Path, prefix: &str) -> Result<ImageProcessorConfig> {
        let field_err = |field: &str, message: String| config_error(file, format!("field `{prefix}{field}`: {message}"));

        let qwen = self.image_processor_type.as_deref().is_some_and(|t| t.starts_with("Qwen2VLImageProcessor"));
        let resize = if !self.do_resize {
            Resize::Off
        } else if qwen {
            let size = match &self.size {
                Some(RawSize::Dict(d)) => d.clone(),
                _ => RawSizeDict::default(),
            };
            let factor = self.patch_size.unwrap_or(14) * self.merge_size.unwrap_or(2);
            // transformers' defaults: 56 x 56 and 28 x 28 x 1280 pixels.
            let min_pixels = self.min_pixels.or(size.shortest_edge.map(u64::from)).unwrap_or(56 * 56);
            let max_pixels = self.max_pixels.or(size.longest_edge.map(u64::from)).unwrap_or(28 * 28 * 1280);
            if factor == 0 || min_pixels > max_pixels {
                return Err(field_err("size", format!("min_pixels {min_pixels} > max_pixels {max_pixels}, or a zero patch size")));
            }
            Resize::Smart { factor, min_pixels, max_pixels }
        } else {
            match &self.size {
                None => Resize::ShortestEdge(DEFAULT_SIZE),
                // CLIP's processor reads a bare integer as a shortest edge (default_to_square=False).
                Some(RawSize::Int(s)) => Resize::ShortestEdge(*s),
                Some(RawSize::Dict(d)) => match (d.shortest_edge, d.longest_edge, d.height, d.width) {
                    (Some(s), None, None, None) => Resize::ShortestEdge(s),
                    (None, None, Some(height), Some(width)) => Resize::Exact { height, width },
                    _ => {
                        return Err(field_err("size", format!("unsupported combination {d:?}{}", expected_form("size"))));
                    }
                },
            }
        };
        match resize {
            Resize::ShortestEdge(0) => return Err(field_err("size", "shortest_edge must be positive".into())),
            Resize::Exact { height, width } if height == 0 || width == 0 => {
                return Err(field_err("size", "height and width must be positive".into()));
            }
            _ => {}
        }

        let resample = match self.resample {
            None => Filter::Bicubic,
            Some(code) => Filter::from_pil(code).ok_or_else(|| {
                field_err("resample", format!("PIL resampling code {code} is not supported (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic)"))
            })?,
        };

        let crops_by_default = !matches!(
            self.image_processor_type.as_deref(),
            Some("Gemma3ImageProcessor" | "Gemma3ImageProcessorFast" | "SiglipImageProcessor" | "SiglipImageProcessorFast")
        ) && !qwen;
        let crop = if !self.do_center_crop.unwrap_or(crops_by_default) {
            Crop::Off
        } else {
            let (height, width) = match &self.crop_size {
                None => (DEFAULT_SIZE, DEFAULT_SIZE),
                // transformers reads an integer crop size as a square (default_to_square=True).
                Some(RawSize::Int(s)) => (*s, *s),
                Some(RawSize::Dict(RawSizeDict { shortest_edge: None, longest_edge: None, height: Some(h), width: Some(w) })) => (*h, *w),
                Some(RawSize::Dict(d)) => {
                    return Err(field_err("crop_size", format!("unsupported combination {d:?}{}", expected_form("crop_size"))));
                }
            };
            if height == 0 || width == 0 {
                return Err(field_err("crop_size", "height and width must be positive".into()));
            }
            Crop::Center { height, width }
        };

        let rescale_factor = if self.do_rescale {
            let f = self.rescale_factor.unwrap_or(1.0 / 255.0);
            if !f.is_finite() {
                return Err(field_err("rescale_factor", format!("{f} is not finite")));
            }
            f
        } else {
            1.0
        };

        let normalize = if self.do_normalize {
            let channels = |field: &str, v: &Option<RawFloats>, default: [f32; 3]| -> Result<[f32; 3]> {
                let values = match v {
                    None => default,
                    Some(RawFloats::One(x)) => [*x; 3],
                    Some(RawFloats::Many(xs)) => <[f32; 3]>::try_from(xs.as_slice())
                        .map_err(|_| field_err(field, format!("has {} values, expected 3 (RGB)", xs.len())))?,
                };
                if values.iter().any(|x| !x.is_finite()) {
                    return Err(field_err(field, format!("{values:?} has a non-finite value")));
                }
                Ok(values)
            };
            let mean = channels("image_mean", &self.image_mean, OPENAI_CLIP_MEAN)?;
            let std = channels("image_std", &self.image_std, OPENAI_CLIP_STD)?;
            if std.contains(&0.0) {
                return Err(field_err("image_std", format!("{std:?} has a zero, which would divide by zero")));
            }
            Normalize::MeanStd { mean, std }
        } else {
            Normalize::Off
        };

        Ok(ImageProcessorConfig {
            convert_rgb: self.do_convert_rgb,
            resize,
            resample,
            crop,
            rescale_factor,
            normalize,
            grey_stretch: false,
        })
    }

    /// Applies `CLIPImageProcessor`'s defaults and checks the values; errors name `file`.
    pub fn resolve(&self, file: &Path) -> Result<ImageProcessorConfig> {
        self.resolve_in(file, "")
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| config_error(path, format!("invalid JSON: {e}")))
}

/// Floor division, as Python's `//`, which transformers uses for the crop offsets; it differs from
/// Rust's `/` when the crop is larger than the image (negative numerator).
fn floor_half(n: i64) -> i64 {
    n.div_euclid(2)
}

impl ImageProcessorConfig {
    /// Reads `preprocessor_config.json` from `model_dir`, else the `"image_processor"` object of
    /// `processor_config.json` (transformers 5.x).
    pub fn load(model_dir: &Path) -> Result<Self> {
        let pre = model_dir.join(PREPROCESSOR_CONFIG);
        if pre.is_file() {
            let value = read_json(&pre)?;
            return RawImageProcessorConfig::from_json(&value, &pre, "")?.resolve_in(&pre, "");
        }
        let proc_path = model_dir.join(PROCESSOR_CONFIG);
        if !proc_path.is_file() {
            return Err(ModelError::MissingFile {
                path: pre,
                hint: format!(" (nor {PROCESSOR_CONFIG} with an \"{IMAGE_PROCESSOR_KEY}\" object)"),
            });
        }
        let value = read_json(&proc_path)?;
        let inner = value.get(IMAGE_PROCESSOR_KEY).ok_or_else(|| {
            config_error(&proc_path, format!("no \"{IMAGE_PROCESSOR_KEY}\" object, and no {PREPROCESSOR_CONFIG} beside it"))
        })?;
        let prefix = format!("{IMAGE_PROCESSOR_KEY}.");
        RawImageProcessorConfig::from_json(inner, &proc_path, &prefix)?.resolve_in(&proc_path, &prefix)
    }

    /// The size after resizing, `(width, height)`, for an `image_w` x `image_h` input.
    pub fn resized_size(&self, image_w: u32, image_h: u32) -> (u32, u32) {
        match self.resize {
            Resize::Off => (image_w, image_h),
            Resize::Exact { height, width } => (width, height),
            Resize::Smart { factor, min_pixels, max_pixels } => {
                let (h, w) = super::qwen25vl::smart_resize(image_h, image_w, factor, min_pixels, max_pixels);
                (w, h)
            }
            Resize::ShortestEdge(s) => {
                let (short, long) = if image_w <= image_h { (image_w, image_h) } else { (image_h, image_w) };
                // transformers: int(size * long / short), a float division then truncation.
                let new_long = (f64::from(s) * f64::from(long) / f64::from(short)) as u32;
                if image_w <= image_h { (s, new_long) } else { (new_long, s) }
            }
        }
    }

    /// The output size, `(width, height)`, for an `image_w` x `image_h` input.
    pub fn output_size(&self, image_w: u32, image_h: u32) -> (u32, u32) {
        match self.crop {
            Crop::Off => self.resized_size(image_w, image_h),
            Crop::Center { height, width } => (width, height),
        }
    }

    fn to_rgb(&self, img: &DynamicImage) -> Result<RgbImage> {
        match img {
            DynamicImage::ImageRgb8(rgb) => Ok(rgb.clone()),
            // PIL's convert("RGB") replicates grey and drops alpha without compositing, and so
            // does `image`'s conversion; 16-bit samples are scaled to 8 bits.
            _ if self.convert_rgb => Ok(img.to_rgb8()),
            _ => Err(ModelError::Invalid(format!(
                "the image is {:?}, not 8-bit RGB, and the image processor has do_convert_rgb = false",
                img.color()
            ))),
        }
    }

    /// Preprocesses one image into the model input and the region of the image it covers.
    pub fn preprocess(&self, img: &DynamicImage) -> Result<PreprocessedImage> {
        let (image_w, image_h) = (img.width(), img.height());
        if image_w == 0 || image_h == 0 {
            return Err(ModelError::Invalid(format!("the image is empty ({image_w}x{image_h})")));
        }
        if let Resize::Smart { .. } = self.resize {
            super::qwen25vl::check_aspect_ratio(image_w, image_h)?;
        }
        let rgb = if self.grey_stretch { grey_stretch(img)? } else { self.to_rgb(img)? };

        let (rw, rh) = self.resized_size(image_w, image_h);
        let exact_resize = self.grey_stretch || matches!(self.resize, Resize::Smart { .. });
        let resized = if (rw, rh) == (image_w, image_h) {
            // As PIL, an unchanged size is a copy, not a resample.
            rgb
        } else if let (true, Some(exact)) = (exact_resize, super::pil_resize::resize(&rgb, rw, rh, self.resample)) {
            // Qwen2.5-VL resizes nearly every image, MAIRA-2 every one: PIL's 8-bit resize, exactly.
            exact
        } else {
            image::imageops::resize(&rgb, rw, rh, self.resample.to_image())
        };

        let (out_w, out_h) = self.output_size(image_w, image_h);
        let (left, top) = match self.crop {
            Crop::Off => (0, 0),
            Crop::Center { .. } => (floor_half(i64::from(rw) - i64::from(out_w)), floor_half(i64::from(rh) - i64::from(out_h))),
        };

        let scale = self.rescale_factor as f32;
        let (mean, std) = match self.normalize {
            Normalize::Off => ([0.0; 3], [1.0; 3]),
            Normalize::MeanStd { mean, std } => (mean, std),
        };
        let (w, h) = (out_w as usize, out_h as usize);
        let mut pixel_values = vec![0.0f32; 3 * h * w];
        for y in 0..h {
            let sy = top + y as i64;
            for x in 0..w {
                let sx = left + x as i64;
                let inside = (0..i64::from(rw)).contains(&sx) && (0..i64::from(rh)).contains(&sy);
                // Outside the resized image is the crop's zero padding.
                let px = if inside { resized.get_pixel(sx as u32, sy as u32).0 } else { [0; 3] };
                for c in 0..3 {
                    // f32 throughout, in the reference's order: rescale, subtract, divide.
                    let v = f32::from(px[c]) * scale;
                    pixel_values[(c * h + y) * w + x] = (v - mean[c]) / std[c];
                }
            }
        }

        // The crop rectangle in resized pixels, mapped back per axis. Resampling maps pixel edges
        // linearly (output pixel centres sit at (i + 0.5) * scale), so edges map by the ratio.
        let sx = f64::from(image_w) / f64::from(rw);
        let sy = f64::from(image_h) / f64::from(rh);
        let crop = PixelBox::new(left as f64 * sx, top as f64 * sy, (left + w as i64) as f64 * sx, (top + h as i64) as f64 * sy)?;

        Ok(PreprocessedImage { pixel_values, height: h, width: w, crop, image_w, image_h })
    }
}

/// `Maira2Processor._normalize_image`: PIL's `convert("L")` (ITU-R 601-2 luma in PIL's fixed
/// point, `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`; grey images as they are), then
/// `(v - min) / (max - min) * 255` in f64 truncated to 8 bits (numpy's `astype(uint8)`), then
/// grey replicated to RGB. A constant image has no range to stretch (transformers divides by
/// zero and gets NaN): an error here.
pub fn grey_stretch(img: &DynamicImage) -> Result<RgbImage> {
    let grey: Vec<u8> = match img {
        DynamicImage::ImageLuma8(g) => g.as_raw().clone(),
        DynamicImage::ImageLumaA8(g) => g.pixels().map(|p| p.0[0]).collect(),
        other => other
            .to_rgb8()
            .pixels()
            .map(|p| ((u32::from(p.0[0]) * 19595 + u32::from(p.0[1]) * 38470 + u32::from(p.0[2]) * 7471 + 0x8000) >> 16) as u8)
            .collect(),
    };
    let (lo, hi) = grey.iter().fold((u8::MAX, u8::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo == hi {
        return Err(ModelError::Invalid(format!(
            "the image is constant (every pixel {lo}): MAIRA-2's min-max stretch has no range (transformers divides by zero)"
        )));
    }
    let range = f64::from(hi - lo);
    let stretched = grey.iter().map(|&v| (f64::from(v - lo) / range * 255.0) as u8);
    let rgb: Vec<u8> = stretched.flat_map(|v| [v, v, v]).collect();
    Ok(RgbImage::from_raw(img.width(), img.height(), rgb).expect("3 bytes per pixel"))
}

/// Opens and decodes an image (PNG or JPEG), detecting the format from the content.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingFile { path: path.to_path_buf(), hint: String::new() },
        _ => ModelError::Io { path: path.to_path_buf(), source },
    })?;
    let reader = reader.with_guessed_format().map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    reader.decode().map_err(|e| ModelError::Image { path: PathBuf::from(path), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use image::{GrayImage, LumaA, Rgb, Rgba, RgbaImage};

    use super::*;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/reference-v1");

    fn fixture(rel: &str) -> PathBuf {
        Path::new(FIXTURE).join(rel)
    }

    /// A fresh directory under the system temp dir, unique per test and process.
    fn temp_dir(tag: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("radlens-clip-image-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn llava_config() -> ImageProcessorConfig {
        ImageProcessorConfig::load(&fixture("llava-tiny")).unwrap()
    }

    #[test]
    fn loads_the_image_processor_object_of_processor_config_json() {
        let cfg = llava_config();
        assert_eq!(
            cfg,
            ImageProcessorConfig {
                convert_rgb: true,
                resize: Resize::ShortestEdge(56),
                resample: Filter::Bicubic,
                crop: Crop::Center { height: 56, width: 56 },
                rescale_factor: 0.00392156862745098,
                normalize: Normalize::MeanStd { mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD },
                grey_stretch: false,
            }
        );
    }

    #[test]
    fn preprocessor_config_json_wins_and_omitted_fields_take_clip_defaults() {
        let dir = temp_dir("pre");
        // Unknown fields are ignored; the omitted ones (do_*, mean/std, rescale) are defaults.
        std::fs::write(
            dir.join(PREPROCESSOR_CONFIG),
            r#"{"size": {"height": 32, "width": 48}, "crop_size": 24, "resample": 2, "feature_extractor_type": "x"}"#,
        )
        .unwrap();
        std::fs::write(dir.join(PROCESSOR_CONFIG), r#"{"image_processor": {"resample": 0}}"#).unwrap();
        let cfg = ImageProcessorConfig::load(&dir).unwrap();
        assert_eq!(cfg.resize, Resize::Exact { height: 32, width: 48 });
        assert_eq!(cfg.crop, Crop::Center { height: 24, width: 24 });
        assert_eq!(cfg.resample, Filter::Bilinear);
        assert_eq!(cfg.rescale_factor, 1.0 / 255.0);
        assert_eq!(cfg.normalize, Normalize::MeanStd { mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD });
        assert!(cfg.convert_rgb);

        // An integer size is a shortest edge for CLIP; turned-off steps resolve to "off".
        std::fs::write(
            dir.join(PREPROCESSOR_CONFIG),
            r#"{"size": 336, "do_center_crop": false, "do_rescale": false, "do_normalize": false, "crop_size": null}"#,
        )
        .unwrap();
        let cfg = ImageProcessorConfig::load(&dir).unwrap();
        assert_eq!(cfg.resize, Resize::ShortestEdge(336));
        assert_eq!(cfg.crop, Crop::Off);
        assert_eq!(cfg.rescale_factor, 1.0);
        assert_eq!(cfg.normalize, Normalize::Off);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_config_names_both_candidate_files() {
        let dir = temp_dir("missing");
        let err = ImageProcessorConfig::load(&dir).unwrap_err();
        assert!(matches!(err, ModelError::MissingFile { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(PREPROCESSOR_CONFIG) && msg.contains(PROCESSOR_CONFIG), "{msg}");

        // A processor_config.json without the image-processor object is not enough either.
        std::fs::write(dir.join(PROCESSOR_CONFIG), r#"{"processor_class": "LlavaProcessor"}"#).unwrap();
        let msg = ImageProcessorConfig::load(&dir).unwrap_err().to_string();
        assert!(msg.contains(PROCESSOR_CONFIG) && msg.contains(IMAGE_PROCESSOR_KEY), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_field_names_the_file_and_the_field() {
        let dir = temp_dir("bad");
        let cases = [
            (r#"{"image_processor": {"resample": "bicubic"}}"#, "image_processor.resample"),
            (r#"{"image_processor": {"resample": 4}}"#, "image_processor.resample"),
            (r#"{"image_processor": {"size": {"longest_edge": 3}}}"#, "image_processor.size"),
            (r#"{"image_processor": {"size": "big"}}"#, "image_processor.size"),
            (r#"{"image_processor": {"crop_size": {"height": 0, "width": 4}}}"#, "image_processor.crop_size"),
            (r#"{"image_processor": {"image_std": [0.5, 0.5]}}"#, "image_processor.image_std"),
            (r#"{"image_processor": {"image_std": [0.5, 0.0, 0.5]}}"#, "image_processor.image_std"),
        ];
        for (json, field) in cases {
            std::fs::write(dir.join(PROCESSOR_CONFIG), json).unwrap();
            let err = ImageProcessorConfig::load(&dir).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, ModelError::Config { .. }), "{json}: {err:?}");
            assert!(msg.contains(PROCESSOR_CONFIG) && msg.contains(&format!("`{field}`")), "{json}: {msg}");
        }
        // In preprocessor_config.json the field sits at the top level.
        std::fs::write(dir.join(PREPROCESSOR_CONFIG), r#"{"do_resize": "yes"}"#).unwrap();
        let msg = ImageProcessorConfig::load(&dir).unwrap_err().to_string();
        assert!(msg.contains(PREPROCESSOR_CONFIG) && msg.contains("`do_resize`"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_image_errors_name_the_file() {
        let dir = temp_dir("img");
        let missing = dir.join("nope.png");
        let msg = load_image(&missing).unwrap_err().to_string();
        assert!(msg.contains("nope.png"), "{msg}");
        let garbage = dir.join("garbage.png");
        std::fs::write(&garbage, b"not an image").unwrap();
        let err = load_image(&garbage).unwrap_err();
        assert!(matches!(err, ModelError::Image { .. }) && err.to_string().contains("garbage.png"), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// (max abs diff, mean abs diff) between two equally long slices.
    fn diffs(a: &[f32], b: &[f32]) -> (f32, f32) {
        assert_eq!(a.len(), b.len());
        let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| (x - y).abs()).collect();
        (d.iter().copied().fold(0.0, f32::max), d.iter().sum::<f32>() / d.len() as f32)
    }

    /// Measured against transformers 5.24 / Pillow 13 (image 0.25.10):
    ///   case0 (grey 80x64):          max |diff| 0.015008, mean 0.002292 (15.7% of values one level off)
    ///   case1, case2 (RGB 300x240):  max |diff| 0.015008, mean 0.000553 (3.9% one level off)
    /// The kernels agree, but PIL rounds to 8 bits between its passes (fixed-point weights) and
    /// `image` keeps the intermediate in f32, so some pixels land one grey level apart; the max is
    /// exactly one level of the green channel, 1/255/0.26130258 = 0.015008. The max tolerance is
    /// that one level plus f32 slack: every plausible mistake measured above it (case0 with
    /// bilinear 0.060, lanczos 0.030, nearest 0.225; a crop offset of 6 or 8 instead of 7: 0.44).
    /// The mean tolerance (0.27 of a level, 1.7x case0's) bounds how many pixels may be off, so a
    /// resize that drifted by a level everywhere would fail even within the max.
    const MAX_ABS_TOL: f32 = 1.0 / 255.0 / OPENAI_CLIP_STD[1] + 1e-4;
    const MEAN_ABS_TOL: f32 = 0.004;

    #[test]
    fn llava_fixture_pixel_values_match_transformers() {
        let cfg = llava_config();
        for case in ["case0", "case1", "case2"] {
            let dir = fixture(&format!("reference/llava-tiny/{case}"));
            let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
            let image_rel = manifest["image"].as_str().unwrap();
            let out = cfg.preprocess(&load_image(&fixture(image_rel)).unwrap()).unwrap();

            let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(dir.join("tensors.safetensors"), &Device::Cpu).unwrap();
            let golden = &tensors["pixel_values"];
            let ours = out.to_tensor(&Device::Cpu).unwrap();
            assert_eq!(ours.dims(), golden.dims(), "{case}");
            assert_eq!(golden.dims(), &[1, 3, 56, 56]);
            let golden: Vec<f32> = golden.flatten_all().unwrap().to_vec1().unwrap();
            let (max, mean) = diffs(&out.pixel_values, &golden);
            eprintln!("{case} ({image_rel}): max abs diff {max:.6}, mean abs diff {mean:.6}");
            assert!(max <= MAX_ABS_TOL, "{case}: max abs diff {max} > {MAX_ABS_TOL}");
            assert!(mean <= MEAN_ABS_TOL, "{case}: mean abs diff {mean} > {MEAN_ABS_TOL}");
        }
    }

    fn assert_box(b: PixelBox, expected: (f64, f64, f64, f64)) {
        let got = (b.x0, b.y0, b.x1, b.y1);
        let close = |a: f64, e: f64| (a - e).abs() < 1e-9;
        assert!(
            close(got.0, expected.0) && close(got.1, expected.1) && close(got.2, expected.2) && close(got.3, expected.3),
            "crop {got:?}, expected {expected:?}"
        );
    }

    #[test]
    fn crop_box_maps_the_center_crop_back_to_original_pixels() {
        let cfg = llava_config();
        // 80x64: the short side 64 -> 56, the long int(56 * 80 / 64) = 70; the crop starts at
        // (70 - 56) // 2 = 7. Both axes scale by 80/70 = 64/56 = 8/7, so x spans 7..63 -> 8..72
        // and y the full 0..56 -> 0..64.
        assert_eq!(cfg.resized_size(80, 64), (70, 56));
        let out = cfg.preprocess(&load_image(&fixture("images/img_a_gray_80x64.png")).unwrap()).unwrap();
        assert_eq!((out.image_w, out.image_h, out.width, out.height), (80, 64, 56, 56));
        assert_box(out.crop, (8.0, 0.0, 72.0, 64.0));

        // 300x240 also resizes to 70x56; the scale is 300/70 = 240/56 = 30/7: x 7..63 -> 30..270.
        let out = cfg.preprocess(&load_image(&fixture("images/img_b_rgb_300x240.png")).unwrap()).unwrap();
        assert_box(out.crop, (30.0, 0.0, 270.0, 240.0));

        // A portrait image crops vertically.
        let portrait = DynamicImage::ImageRgb8(RgbImage::new(64, 80));
        assert_box(cfg.preprocess(&portrait).unwrap().crop, (0.0, 8.0, 64.0, 72.0));
    }

    #[test]
    fn a_crop_larger_than_the_image_pads_with_black() {
        // transformers pads a too-small image with zeros before rescaling, placing it at
        // ceil((crop - size) / 2); equivalently the crop offset is floor((size - crop) / 2),
        // -1 on both axes here (2 - 4 and 2 - 3), so the odd padding row goes on top.
        let cfg = ImageProcessorConfig {
            convert_rgb: true,
            resize: Resize::Off,
            resample: Filter::Bicubic,
            crop: Crop::Center { height: 3, width: 4 },
            rescale_factor: 1.0,
            normalize: Normalize::Off,
            grey_stretch: false,
        };
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([200, 200, 200])));
        let out = cfg.preprocess(&img).unwrap();
        assert_eq!((out.width, out.height), (4, 3));
        let red: Vec<f32> = out.pixel_values[..12].to_vec();
        #[rustfmt::skip]
        assert_eq!(red, [0.0,   0.0,   0.0, 0.0,
                         0.0, 200.0, 200.0, 0.0,
                         0.0, 200.0, 200.0, 0.0]);
        assert_box(out.crop, (-1.0, -1.0, 3.0, 2.0));
    }

    #[test]
    fn a_grayscale_png_gives_three_equal_channels_before_normalisation() {
        let cfg = ImageProcessorConfig { normalize: Normalize::Off, ..llava_config() };
        let img = load_image(&fixture("images/img_a_gray_80x64.png")).unwrap();
        assert!(matches!(img, DynamicImage::ImageLuma8(_)), "the fixture should be 8-bit grey");
        let out = cfg.preprocess(&img).unwrap();
        let plane = out.width * out.height;
        let (r, rest) = out.pixel_values.split_at(plane);
        let (g, b) = rest.split_at(plane);
        assert_eq!(r, g);
        assert_eq!(r, b);
        assert!(r.iter().all(|v| (0.0..=1.0).contains(v)), "rescaled to [0, 1]");
        assert!(r.iter().any(|&v| v != r[0]), "the gradient survives");
    }

    /// An image with varied colour and alpha, and its RGB part alone.
    fn rgba_and_rgb(w: u32, h: u32) -> (RgbaImage, RgbImage) {
        let px = |x: u32, y: u32| [(x * 7 % 256) as u8, (y * 11 % 256) as u8, ((x + y) * 5 % 256) as u8];
        let rgba = RgbaImage::from_fn(w, h, |x, y| {
            let [r, g, b] = px(x, y);
            Rgba([r, g, b, ((x * y) % 256) as u8])
        });
        (rgba, RgbImage::from_fn(w, h, |x, y| Rgb(px(x, y))))
    }

    #[test]
    fn an_rgba_image_drops_alpha_without_compositing() {
        // PIL's convert("RGB") discards alpha; it does not blend onto a background.
        let cfg = llava_config();
        let (rgba, rgb) = rgba_and_rgb(90, 60);
        let dir = temp_dir("rgba");
        let path = dir.join("rgba.png");
        rgba.save(&path).unwrap();
        let loaded = load_image(&path).unwrap();
        assert!(matches!(loaded, DynamicImage::ImageRgba8(_)));
        let ours = cfg.preprocess(&loaded).unwrap();
        let expected = cfg.preprocess(&DynamicImage::ImageRgb8(rgb)).unwrap();
        assert_eq!(ours, expected);
        std::fs::remove_dir_all(&dir).unwrap();

        // Grey + alpha likewise keeps the grey and drops the alpha.
        let la = image::ImageBuffer::from_fn(30, 20, |x, y| LumaA([(x * 8) as u8, (y * 12) as u8]));
        let grey = GrayImage::from_fn(30, 20, |x, _| image::Luma([(x * 8) as u8]));
        assert_eq!(cfg.preprocess(&DynamicImage::ImageLumaA8(la)).unwrap(), cfg.preprocess(&DynamicImage::ImageLuma8(grey)).unwrap());
    }

    #[test]
    fn without_convert_rgb_only_rgb_images_are_accepted() {
        let cfg = ImageProcessorConfig { convert_rgb: false, ..llava_config() };
        let grey = DynamicImage::ImageLuma8(GrayImage::new(8, 8));
        assert!(matches!(cfg.preprocess(&grey), Err(ModelError::Invalid(_))));
        assert!(cfg.preprocess(&DynamicImage::ImageRgb8(RgbImage::new(8, 8))).is_ok());
    }

    #[test]
    fn to_tensor_is_a_batch_of_one() {
        let cfg = llava_config();
        let out = cfg.preprocess(&DynamicImage::ImageRgb8(RgbImage::new(100, 60))).unwrap();
        let t = out.to_tensor(&Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 56, 56]);
        assert_eq!(t.dtype(), candle_core::DType::F32);
        // Black is -mean/std in every channel.
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert!((v[0] + OPENAI_CLIP_MEAN[0] / OPENAI_CLIP_STD[0]).abs() < 1e-6);
        assert!((v[2 * 56 * 56] + OPENAI_CLIP_MEAN[2] / OPENAI_CLIP_STD[2]).abs() < 1e-6);
    }
}

#[cfg(test)]
mod gemma3_tests {
    use std::path::Path;

    use candle_core::Device;

    use super::*;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reference-v1").join(rel)
    }

    /// Gemma3ImageProcessor: the whole image stretched to 64x64 with bilinear, (x/255 - 0.5)/0.5,
    /// so the grid covers the whole image. PIL resizes in 8 bits with its own bilinear kernel; the
    /// `image` crate's triangle filter differs by at most one grey level on the fixtures, i.e.
    /// 1/255/0.5 = 0.00784 in pixel values (measured max 0.007843, mean 0.00008-0.00026); a
    /// wrong filter, a crop or a kept aspect ratio is far outside.
    const MAX_ABS: f32 = 1.0 / 255.0 / 0.5 + 1e-4;
    const MEAN_ABS: f32 = 0.001;

    #[test]
    fn gemma3_preprocessing_stretches_the_whole_image_like_pil() {
        let cfg = ImageProcessorConfig::load(&fixture("gemma3-tiny")).unwrap();
        assert_eq!(cfg.crop, Crop::Off, "Gemma3's processor has no crop step");
        for case in ["case0", "case1", "case2"] {
            let dir = fixture(&format!("reference/gemma3-tiny/{case}"));
            let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
            let img = load_image(&fixture(manifest["image"].as_str().unwrap())).unwrap();
            let out = cfg.preprocess(&img).unwrap();
            assert_eq!((out.crop.x0, out.crop.y0, out.crop.x1, out.crop.y1), (0.0, 0.0, f64::from(out.image_w), f64::from(out.image_h)));
            let want = candle_core::safetensors::load(dir.join("tensors.safetensors"), &Device::Cpu).unwrap()["pixel_values"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(out.pixel_values.len(), want.len());
            let diffs: Vec<f32> = out.pixel_values.iter().zip(&want).map(|(a, b)| (a - b).abs()).collect();
            let max = diffs.iter().copied().fold(0.0, f32::max);
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            assert!(max <= MAX_ABS, "{case}: max abs diff {max} > {MAX_ABS}");
            assert!(mean <= MEAN_ABS, "{case}: mean abs diff {mean} > {MEAN_ABS}");
        }
    }
}
