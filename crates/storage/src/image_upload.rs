//! Avatar images arrive untrusted: the type is decided by magic bytes (never by the client's
//! claim), decoding runs under size and memory limits, and the pixels are re-encoded so no
//! metadata (EXIF location, comments, polyglot payloads) survives.

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

pub const AVATAR_EDGE: u32 = 512;
const MAX_SOURCE_EDGE: u32 = 8192;
const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvatarError {
    #[error("the file is not a PNG, JPEG, WebP or GIF image")]
    UnsupportedType,
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
    #[error("the image is larger than {MAX_SOURCE_EDGE}x{MAX_SOURCE_EDGE} pixels")]
    TooLarge,
}

#[derive(Debug)]
pub struct ProcessedImage {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub extension: &'static str,
    pub width: u32,
    pub height: u32,
}

/// The format named by the file's first bytes, if it is one we accept.
pub fn sniff_image(b: &[u8]) -> Option<ImageFormat> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else {
        None
    }
}

/// Validates, decodes, shrinks to fit `AVATAR_EDGE` and re-encodes (JPEG stays JPEG, everything
/// else becomes PNG). CPU-heavy: call it from a blocking thread.
pub fn process_avatar(data: &[u8]) -> Result<ProcessedImage, AvatarError> {
    let format = sniff_image(data).ok_or(AvatarError::UnsupportedType)?;
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_EDGE);
    limits.max_image_height = Some(MAX_SOURCE_EDGE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => AvatarError::TooLarge,
        other => AvatarError::Corrupt(other.to_string()),
    })?;
    let img = if img.width() > AVATAR_EDGE || img.height() > AVATAR_EDGE {
        img.thumbnail(AVATAR_EDGE, AVATAR_EDGE)
    } else {
        img
    };
    let (width, height) = (img.width(), img.height());
    let mut out = Cursor::new(Vec::new());
    let (content_type, extension) = if format == ImageFormat::Jpeg {
        let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&rgb)
            .map_err(|e| AvatarError::Corrupt(e.to_string()))?;
        ("image/jpeg", "jpg")
    } else {
        img.write_to(&mut out, ImageFormat::Png)
            .map_err(|e| AvatarError::Corrupt(e.to_string()))?;
        ("image/png", "png")
    };
    Ok(ProcessedImage {
        bytes: out.into_inner(),
        content_type,
        extension,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::new_rgb8(w, h);
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn accepts_png_and_shrinks_large_ones() {
        let p = process_avatar(&png(1024, 512)).unwrap();
        assert_eq!(p.content_type, "image/png");
        assert_eq!((p.width, p.height), (512, 256));
        assert_eq!(sniff_image(&p.bytes), Some(ImageFormat::Png));
    }

    #[test]
    fn rejects_non_images_and_truncated_images() {
        assert_eq!(
            process_avatar(b"<?php echo 1; ?>").unwrap_err(),
            AvatarError::UnsupportedType
        );
        assert!(matches!(
            process_avatar(b"GIF89a"),
            Err(AvatarError::Corrupt(_))
        ));
        let mut truncated = png(64, 64);
        truncated.truncate(40);
        assert!(matches!(
            process_avatar(&truncated),
            Err(AvatarError::Corrupt(_))
        ));
    }

    #[test]
    fn jpeg_stays_jpeg_without_metadata() {
        let img = DynamicImage::new_rgb8(32, 32);
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        let mut jpeg = out.into_inner();
        // Splice an EXIF-like APP1 segment right after SOI; it must not survive re-encoding.
        let app1 = b"\xFF\xE1\x00\x10Exif\x00\x00SECRETGPS";
        jpeg.splice(2..2, app1.iter().copied());
        let p = process_avatar(&jpeg).unwrap();
        assert_eq!(p.content_type, "image/jpeg");
        assert!(!p.bytes.windows(9).any(|w| w == b"SECRETGPS"));
    }
}
