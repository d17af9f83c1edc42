//! Avatar images arrive untrusted: the type is decided by magic bytes (never by the client's
//! claim), the header is read first and anything too big to decode cheaply is refused before a
//! single pixel is decoded, decodes take one of a few process-wide slots, and the pixels are
//! re-encoded so no metadata (EXIF location, comments, polyglot payloads) survives.
//!
//! A small file can announce a huge canvas (an 8192×8192 PNG of one colour is 196 KB and needs
//! 256 MiB decoded), so the memory bound has to hold for the process as a whole: at most
//! `DECODE_SLOTS` decodes at once, each needing at most `MAX_DECODE_BYTES` by the header's own
//! numbers, whatever the number of uploads in flight.

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::io::Cursor;
use std::time::Duration;
use tokio::sync::Semaphore;

pub const AVATAR_EDGE: u32 = 512;
/// The largest source edge accepted: eight times the avatar's, more than any camera photo needs
/// once shrunk to 512 pixels.
pub const MAX_SOURCE_EDGE: u32 = 4096;
/// What one decode may need, estimated from the header (decoded pixels plus the decoder's own
/// working buffers); also the decoder's allocation limit.
pub const MAX_DECODE_BYTES: u64 = 80 * 1024 * 1024;
/// Decodes running at once in the process. With `MAX_DECODE_BYTES` this keeps decoding within
/// 160 MiB however many uploads arrive; decoding is CPU-bound, so more slots than cores buy
/// nothing anyway.
pub const DECODE_SLOTS: usize = 2;
/// How long an upload waits for a free slot before it is turned away as busy.
pub const DECODE_WAIT: Duration = Duration::from_secs(5);

static DECODES: Semaphore = Semaphore::const_new(DECODE_SLOTS);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvatarError {
    #[error("the file is not a PNG, JPEG, WebP or GIF image")]
    UnsupportedType,
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
    #[error("the image must be at most {MAX_SOURCE_EDGE}x{MAX_SOURCE_EDGE} pixels")]
    TooLarge,
    #[error("the image needs too much memory to decode; use fewer pixels or 8 bits per channel")]
    TooHeavy,
    #[error("too many images are being processed right now; try again in a few seconds")]
    Busy,
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

fn reader(data: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_EDGE);
    limits.max_image_height = Some(MAX_SOURCE_EDGE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader
}

fn decode_error(e: image::ImageError) -> AvatarError {
    match e {
        image::ImageError::Limits(l) => match l.kind() {
            image::error::LimitErrorKind::DimensionError => AvatarError::TooLarge,
            _ => AvatarError::TooHeavy,
        },
        other => AvatarError::Corrupt(other.to_string()),
    }
}

/// Reads only the header and refuses what is too big to decode, before any pixel data is
/// touched. Cheap enough for the request's own thread.
pub fn check_avatar_header(data: &[u8]) -> Result<ImageFormat, AvatarError> {
    let format = sniff_image(data).ok_or(AvatarError::UnsupportedType)?;
    let decoder = reader(data, format).into_decoder().map_err(decode_error)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(AvatarError::Corrupt("the image has no pixels".into()));
    }
    if w > MAX_SOURCE_EDGE || h > MAX_SOURCE_EDGE {
        return Err(AvatarError::TooLarge);
    }
    if decode_cost(format, decoder.total_bytes(), data) > MAX_DECODE_BYTES {
        return Err(AvatarError::TooHeavy);
    }
    Ok(format)
}

/// Peak memory of decoding, from the header: the decoded pixels, plus what each decoder holds
/// besides. PNG decodes row by row into the output. A progressive JPEG keeps every DCT
/// coefficient (2 bytes per sample of each component plane) until the last scan. A GIF frame
/// that does not cover the screen is decoded into a buffer of its own first. An animated WebP
/// composes its first frame (one buffer) onto a canvas (another) before the output is filled,
/// and a lossless one without alpha decodes to RGBA before dropping to RGB.
fn decode_cost(format: ImageFormat, output: u64, data: &[u8]) -> u64 {
    match format {
        ImageFormat::Jpeg => output.saturating_add(jpeg_coefficient_bytes(data, output)),
        ImageFormat::Gif => output.saturating_mul(2),
        ImageFormat::WebP => output.saturating_mul(3),
        _ => output,
    }
}

/// The coefficient memory of a progressive JPEG (0 for a baseline one), from its frame header.
/// A header this walk cannot follow (the decoder is more lenient) counts as progressive with
/// every component at full size: up to four 2-byte planes for at least one output byte a pixel.
fn jpeg_coefficient_bytes(data: &[u8], output: u64) -> u64 {
    let Some(sof) = jpeg_frame(data) else {
        return output.saturating_mul(8);
    };
    if !sof.progressive {
        return 0;
    }
    let (h_max, v_max) = sof.components.iter().fold((1, 1), |(h, v), &(ch, cv)| {
        (h.max(u64::from(ch)), v.max(u64::from(cv)))
    });
    // Planes are padded to whole 8×8 blocks of whole MCUs.
    let mcu_w = 8 * h_max;
    let mcu_h = 8 * v_max;
    let width = u64::from(sof.width).div_ceil(mcu_w) * mcu_w;
    let height = u64::from(sof.height).div_ceil(mcu_h) * mcu_h;
    sof.components
        .iter()
        .map(|&(h, v)| width * u64::from(h) / h_max * (height * u64::from(v) / v_max) * 2)
        .sum()
}

struct JpegFrame {
    progressive: bool,
    width: u16,
    height: u16,
    /// Horizontal and vertical sampling factor of each component.
    components: Vec<(u8, u8)>,
}

/// The first start-of-frame segment, found by walking the marker segments after SOI.
fn jpeg_frame(data: &[u8]) -> Option<JpegFrame> {
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while *data.get(i)? == 0xFF && *data.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *data.get(i)? != 0xFF {
            return None;
        }
        let marker = *data.get(i + 1)?;
        i += 2;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue; // standalone markers: no length
        }
        let len = usize::from(u16::from_be_bytes([*data.get(i)?, *data.get(i + 1)?]));
        let seg = data.get(i + 2..i + len)?;
        let is_sof = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let height = u16::from_be_bytes([*seg.get(1)?, *seg.get(2)?]);
            let width = u16::from_be_bytes([*seg.get(3)?, *seg.get(4)?]);
            let n = usize::from(*seg.get(5)?);
            let mut components = Vec::with_capacity(n);
            for c in 0..n {
                let s = *seg.get(6 + c * 3 + 1)?;
                components.push(((s >> 4).max(1), (s & 0x0F).max(1)));
            }
            return Some(JpegFrame {
                progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                width,
                height,
                components,
            });
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // scan data or the end before any frame header
        }
        i += len;
    }
}

/// Validates, decodes, shrinks to fit `AVATAR_EDGE` and re-encodes (JPEG stays JPEG, everything
/// else becomes PNG). CPU-heavy and unbounded in number: servers call `process_avatar_bounded`.
pub fn process_avatar(data: &[u8]) -> Result<ProcessedImage, AvatarError> {
    let format = check_avatar_header(data)?;
    let img = reader(data, format).decode().map_err(decode_error)?;
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

/// `process_avatar` on the blocking pool, holding one of the process's `DECODE_SLOTS`. The header
/// is checked first, so an oversized image is refused without taking a slot; an upload that
/// finds no free slot within `DECODE_WAIT` gets `Busy`. The slot stays taken until the decode
/// ends, even if the request that started it has gone.
pub async fn process_avatar_bounded(data: bytes::Bytes) -> Result<ProcessedImage, AvatarError> {
    check_avatar_header(&data)?;
    let slot = tokio::time::timeout(DECODE_WAIT, DECODES.acquire())
        .await
        .map_err(|_| AvatarError::Busy)?
        .map_err(|_| AvatarError::Busy)?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        process_avatar(&data)
    })
    .await
    .unwrap_or_else(|_| Err(AvatarError::Corrupt("the decoder failed".into())))
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

    /// A one-colour image compresses to almost nothing whatever its size: the decompression bomb.
    fn flat_png(w: u32, h: u32, sixteen_bits: bool) -> Vec<u8> {
        let img = if sixteen_bits {
            DynamicImage::new_rgba16(w, h)
        } else {
            DynamicImage::new_rgba8(w, h)
        };
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// The same PNG with other dimensions in its header: what a forger sends, and quicker than
    /// encoding a large 16-bit image in a debug build.
    fn resized_png(png: &[u8], w: u32, h: u32) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for b in bytes {
                crc ^= u32::from(*b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut out = png.to_vec();
        // Signature (8), length (4), "IHDR" (4), then width and height; the CRC follows the
        // 13 data bytes and covers the type and data.
        out[16..20].copy_from_slice(&w.to_be_bytes());
        out[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&out[12..29]);
        out[29..33].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn oversized_canvases_are_refused_from_the_header() {
        let bomb = flat_png(8192, 8192, false);
        assert!(bomb.len() < 5 * 1024 * 1024, "{} bytes", bomb.len());
        assert_eq!(check_avatar_header(&bomb), Err(AvatarError::TooLarge));
        assert_eq!(process_avatar(&bomb).unwrap_err(), AvatarError::TooLarge);
        let wide = flat_png(MAX_SOURCE_EDGE + 1, 16, false);
        assert_eq!(process_avatar(&wide).unwrap_err(), AvatarError::TooLarge);
        // Within the edge but 128 MiB decoded at 16 bits per channel.
        let deep = resized_png(&flat_png(16, 16, true), 4096, 4096);
        assert_eq!(check_avatar_header(&deep), Err(AvatarError::TooHeavy));
        // The largest 8-bit canvas still decodes.
        let p = process_avatar(&flat_png(4096, 4096, false)).unwrap();
        assert_eq!((p.width, p.height), (512, 512));
    }

    /// A GIF announcing a `w`×`h` screen, one frame covering it, and no pixels.
    fn gif_header(w: u16, h: u16) -> Vec<u8> {
        let mut out = b"GIF89a".to_vec();
        out.extend(w.to_le_bytes());
        out.extend(h.to_le_bytes());
        out.extend([0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]); // a two-colour global palette
        out.push(b',');
        out.extend([0, 0, 0, 0]);
        out.extend(w.to_le_bytes());
        out.extend(h.to_le_bytes());
        out.extend([0, 2, 0, b';']);
        out
    }

    #[test]
    fn gif_canvases_count_the_frame_buffer_too() {
        // 4096×4096 RGBA is 64 MiB, with its frame buffer 128 MiB: refused from the header.
        assert_eq!(
            check_avatar_header(&gif_header(4096, 4096)),
            Err(AvatarError::TooHeavy)
        );
        assert_eq!(
            check_avatar_header(&gif_header(2048, 2048)),
            Ok(ImageFormat::Gif)
        );
        assert_eq!(
            check_avatar_header(&gif_header(8192, 16)),
            Err(AvatarError::TooLarge)
        );
    }

    /// SOI, then a start-of-frame segment of the given kind, size and sampling factors.
    fn jpeg_header(marker: u8, w: u16, h: u16, sampling: &[u8]) -> Vec<u8> {
        let mut seg = vec![8];
        seg.extend(h.to_be_bytes());
        seg.extend(w.to_be_bytes());
        seg.push(u8::try_from(sampling.len()).unwrap());
        for (i, s) in sampling.iter().enumerate() {
            seg.extend([u8::try_from(i + 1).unwrap(), *s, 0]);
        }
        let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0, 0, 0xFF, marker];
        out.extend(u16::try_from(seg.len() + 2).unwrap().to_be_bytes());
        out.extend(seg);
        out
    }

    #[test]
    fn progressive_jpeg_counts_its_coefficient_planes() {
        // Baseline JPEG decodes straight into the output.
        assert_eq!(
            jpeg_coefficient_bytes(&jpeg_header(0xC0, 4096, 4096, &[0x11, 0x11, 0x11]), 0),
            0
        );
        // Progressive 4:4:4: three full planes of 2-byte coefficients.
        assert_eq!(
            jpeg_coefficient_bytes(&jpeg_header(0xC2, 4096, 4096, &[0x11, 0x11, 0x11]), 0),
            4096 * 4096 * 3 * 2
        );
        // Progressive 4:2:0 (a phone photo): luma full, chroma a quarter each.
        assert_eq!(
            jpeg_coefficient_bytes(&jpeg_header(0xC2, 4032, 3024, &[0x22, 0x11, 0x11]), 0),
            4032 * 3024 * 2 * 3 / 2
        );
        // No frame header before the scan: assume the worst for the announced output.
        assert_eq!(
            jpeg_coefficient_bytes(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02], 300),
            2400
        );
    }
}
