//! Images in and out of the server: a CSV image name resolved inside the images folder (never
//! outside it), re-encoding for the browser (downscaled, metadata dropped), and the guarded
//! decoder for uploads (magic bytes, a pixel cap read from the header before any pixel is
//! decoded, an allocation cap).

use std::io::Cursor;
use std::path::{Component, Path, PathBuf};

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use super::error::ApiError;

/// Most pixels an uploaded image may have (checked from its header, before decoding).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Most bytes the decoder may allocate.
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// `name` (a record's image, relative to the images folder) inside `root`, or `None` when it
/// would leave it (`..`, an absolute path, a symlink pointing out) or is not a file.
pub fn resolve_inside(root: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let path = root.join(rel).canonicalize().ok()?;
    (path.starts_with(&root) && path.is_file()).then_some(path)
}

/// PNG or JPEG by magic bytes; anything else is refused.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

/// Decodes an untrusted PNG/JPEG: magic bytes, then the size from the header against
/// `max_pixels`, then the decode under an allocation limit.
pub fn decode_limited(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, ApiError> {
    let format = sniff(bytes).ok_or_else(|| ApiError::UnsupportedMediaType("the image must be a PNG or a JPEG".into()))?;
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| ApiError::Unprocessable(format!("unreadable image: {e}")))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels == 0 || pixels > max_pixels {
        return Err(ApiError::PayloadTooLarge(format!("the image is {w} x {h}: over the limit of {max_pixels} pixels")));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    reader.decode().map_err(|e| ApiError::Unprocessable(format!("cannot decode the image: {e}")))
}

/// Re-encodes an image as PNG, at most `max_side` pixels a side; only pixels are kept.
pub fn reencode_png(bytes: &[u8], max_side: u32) -> Result<Vec<u8>, ApiError> {
    let img = decode_limited(bytes, MAX_PIXELS).map_err(|e| ApiError::internal(format!("stored image: {e}")))?;
    let img = if img.width() > max_side || img.height() > max_side { img.thumbnail(max_side, max_side) } else { img };
    let img = match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) | DynamicImage::ImageLumaA8(_) => img,
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(img.to_luma8()),
        other => DynamicImage::ImageRgba8(other.to_rgba8()),
    };
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).map_err(ApiError::internal)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_folder_are_refused() {
        let root = std::env::temp_dir().join(format!("radlens-images-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.png"), b"x").unwrap();
        assert!(resolve_inside(&root, "sub/a.png").is_some());
        for bad in ["", "../a.png", "/etc/passwd", "sub/../../a.png", "sub", "./sub/a.png", "missing.png"] {
            assert!(resolve_inside(&root, bad).is_none(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn only_png_and_jpeg_are_accepted() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageFormat::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(b"GIF89a"), None);
        assert!(matches!(decode_limited(b"GIF89a", MAX_PIXELS), Err(ApiError::UnsupportedMediaType(_))));
    }

    #[test]
    fn images_are_downscaled() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(1000, 600, image::Luma([7])));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let out = reencode_png(&png, 512).unwrap();
        let back = image::load_from_memory(&out).unwrap();
        assert_eq!((back.width(), back.height()), (512, 307));
        assert!(matches!(decode_limited(&png, 1000), Err(ApiError::PayloadTooLarge(_))));
    }
}
