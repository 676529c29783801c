//! Pure image work: data URLs, format checks by the bytes themselves, decoding with limits,
//! resizing and JPEG encoding. No I/O; the service runs these on the blocking pool.

use std::io::Cursor;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits, Rgb, RgbImage};
use uuid::Uuid;

/// JPEG quality of every variant: visually lossless for photos at a third of the size of 95.
const JPEG_QUALITY: u8 = 85;
/// The chunk every complete PNG ends with: length 0, `IEND`, CRC.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }

    pub fn from_mime(mime: &str) -> Option<Self> {
        match mime {
            "image/jpeg" | "image/jpg" => Some(Self::Jpeg),
            "image/png" => Some(Self::Png),
            _ => None,
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
        }
    }
}

/// Why an upload is refused; each becomes a 400 or 413 with path `image`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("must be a data URL: data:image/jpeg;base64,... or data:image/png;base64,...")]
    NotADataUrl,
    #[error("is not valid base64")]
    NotBase64,
    #[error("is not a JPEG or PNG image")]
    NotAnImage,
    #[error("is a {actual} image but was declared as {declared}")]
    WrongMime {
        declared: &'static str,
        actual: &'static str,
    },
    #[error("has no pixels")]
    Empty,
    #[error("has {pixels} pixels, more than the {limit} allowed")]
    TooManyPixels { pixels: u64, limit: u64 },
    #[error("is truncated or corrupt")]
    Corrupt,
}

/// An accepted upload: its real format, width and the original bytes.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub format: Format,
    pub width: u32,
    pub bytes: Vec<u8>,
}

/// Splits `data:<mime>;base64,<data>` into the declared format and the decoded bytes.
pub fn parse_data_url(url: &str) -> Result<(Format, Vec<u8>), Refusal> {
    let rest = url.strip_prefix("data:").ok_or(Refusal::NotADataUrl)?;
    let (header, data) = rest.split_once(',').ok_or(Refusal::NotADataUrl)?;
    let mime = header.strip_suffix(";base64").ok_or(Refusal::NotADataUrl)?;
    let format = Format::from_mime(&mime.to_ascii_lowercase()).ok_or(Refusal::NotADataUrl)?;
    let bytes = STANDARD
        .decode(data.trim())
        .map_err(|_| Refusal::NotBase64)?;
    Ok((format, bytes))
}

/// The JSON document a GET of `/images/{id}` answers, `{"id":"<id>","image":"data:<mime>;base64,..."}`,
/// byte for byte what serde_json writes. Written directly, in one allocation of the exact size:
/// a UUID, a mime type and base64 need no JSON escaping, and the originals are megabytes.
pub fn json_document(id: Uuid, mime: &str, bytes: &[u8]) -> Vec<u8> {
    let head = format!(r#"{{"id":"{id}","image":"data:{mime};base64,"#);
    let tail = r#""}"#;
    let mut json = String::with_capacity(head.len() + bytes.len().div_ceil(3) * 4 + tail.len());
    json.push_str(&head);
    STANDARD.encode_string(bytes, &mut json);
    json.push_str(tail);
    json.into_bytes()
}

/// Accepts an upload only if its bytes are a complete JPEG or PNG of the declared format within
/// `max_pixels`. The size is read from the header first, so a decompression bomb is refused before
/// a single pixel is decoded; the full decode then runs with an allocation limit.
pub fn accept(declared: Format, bytes: Vec<u8>, max_pixels: u64) -> Result<Accepted, Refusal> {
    let format = match image::guess_format(&bytes) {
        Ok(ImageFormat::Jpeg) => Format::Jpeg,
        Ok(ImageFormat::Png) => Format::Png,
        _ => return Err(Refusal::NotAnImage),
    };
    if format != declared {
        return Err(Refusal::WrongMime {
            declared: declared.mime(),
            actual: format.mime(),
        });
    }
    let (width, height) = reader(&bytes, format, max_pixels)
        .into_dimensions()
        .map_err(|_| Refusal::Corrupt)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(Refusal::Empty);
    }
    if pixels > max_pixels {
        return Err(Refusal::TooManyPixels {
            pixels,
            limit: max_pixels,
        });
    }
    // Decoders forgive a missing end (a JPEG's truncated scan is filled with grey, a PNG decodes
    // without its end chunk): require the format's end marker.
    let complete = match format {
        Format::Jpeg => ends_with_jpeg_eoi(&bytes),
        Format::Png => bytes.ends_with(&PNG_IEND),
    };
    if !complete {
        return Err(Refusal::Corrupt);
    }
    decode(&bytes, format, max_pixels).map_err(|_| Refusal::Corrupt)?;
    Ok(Accepted {
        format,
        width,
        bytes,
    })
}

/// The image as a JPEG at most `width` pixels wide (never upscaled), aspect ratio kept, with a
/// Catmull-Rom filter; transparency is flattened onto white, as a page background would show it.
pub fn jpeg_variant(
    original: &[u8],
    format: Format,
    width: Option<u32>,
    max_pixels: u64,
) -> image::ImageResult<Vec<u8>> {
    let mut image = decode(original, format, max_pixels)?;
    if let Some(width) = width.filter(|&width| width < image.width()) {
        let height =
            (u64::from(image.height()) * u64::from(width) / u64::from(image.width())).max(1);
        image = image.resize_exact(width, height as u32, FilterType::CatmullRom);
    }
    let rgb = flatten_on_white(image);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY).encode_image(&rgb)?;
    Ok(jpeg)
}

fn reader(bytes: &[u8], format: Format, max_pixels: u64) -> ImageReader<Cursor<&[u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let mut limits = Limits::default();
    // Up to 16-bit RGBA per pixel, plus room for the decoder's own buffers.
    limits.max_alloc = Some(max_pixels * 8 + 64 * 1024 * 1024);
    reader.limits(limits);
    reader
}

fn decode(bytes: &[u8], format: Format, max_pixels: u64) -> image::ImageResult<DynamicImage> {
    reader(bytes, format, max_pixels).decode()
}

fn ends_with_jpeg_eoi(bytes: &[u8]) -> bool {
    // Some encoders pad after the end-of-image marker; tolerate a little of that.
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|pair| pair == [0xFF, 0xD9])
}

fn flatten_on_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let blend = |channel: u8| {
            let alpha = u16::from(a);
            ((u16::from(channel) * alpha + 255 * (255 - alpha)) / 255) as u8
        };
        Rgb([blend(r), blend(g), blend(b)])
    })
}

#[cfg(test)]
mod tests {
    use image::{Rgba, RgbaImage};

    use super::*;

    const LIMIT: u64 = 40_000_000;

    fn png(width: u32, height: u32, pixel: Rgba<u8>) -> Vec<u8> {
        let mut bytes = Vec::new();
        RgbaImage::from_pixel(width, height, pixel)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        RgbImage::from_pixel(width, height, Rgb([10, 120, 200]))
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg)
            .unwrap();
        bytes
    }

    fn data_url(mime: &str, bytes: &[u8]) -> String {
        format!("data:{mime};base64,{}", STANDARD.encode(bytes))
    }

    fn decoded(jpeg: &[u8]) -> DynamicImage {
        image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg).unwrap()
    }

    #[test]
    fn data_urls_are_parsed_and_built_back() {
        let url = data_url("image/png", b"abc");
        assert_eq!(parse_data_url(&url), Ok((Format::Png, b"abc".to_vec())));
        assert_eq!(
            parse_data_url("data:image/gif;base64,AAAA"),
            Err(Refusal::NotADataUrl)
        );
        assert_eq!(
            parse_data_url("image/png;base64,AAAA"),
            Err(Refusal::NotADataUrl)
        );
        assert_eq!(
            parse_data_url("data:image/png;base64,***"),
            Err(Refusal::NotBase64)
        );
    }

    #[test]
    fn the_json_document_is_what_serde_json_writes() {
        let id = Uuid::new_v4();
        for bytes in [&b""[..], b"a", b"ab", b"abc", &jpeg(16, 16)] {
            let document = json_document(id, "image/png", bytes);
            let expected = serde_json::to_vec(
                &serde_json::json!({"id": id, "image": data_url("image/png", bytes)}),
            )
            .unwrap();
            assert_eq!(
                String::from_utf8(document.clone()),
                String::from_utf8(expected)
            );
            assert_eq!(
                document.capacity(),
                document.len(),
                "one allocation, no slack"
            );
        }
    }

    #[test]
    fn a_lying_mime_type_is_refused() {
        let refusal = accept(Format::Jpeg, png(4, 4, Rgba([0, 0, 0, 255])), LIMIT).unwrap_err();
        assert!(matches!(refusal, Refusal::WrongMime { .. }));
    }

    #[test]
    fn random_bytes_and_truncated_files_are_refused() {
        assert_eq!(
            accept(Format::Png, b"hello world".to_vec(), LIMIT).unwrap_err(),
            Refusal::NotAnImage
        );
        let whole = jpeg(64, 64);
        let truncated = whole[..whole.len() / 2].to_vec();
        assert_eq!(
            accept(Format::Jpeg, truncated, LIMIT).unwrap_err(),
            Refusal::Corrupt
        );
        let whole = png(64, 64, Rgba([1, 2, 3, 255]));
        let truncated = whole[..whole.len() - 20].to_vec();
        assert_eq!(
            accept(Format::Png, truncated, LIMIT).unwrap_err(),
            Refusal::Corrupt
        );
    }

    #[test]
    fn too_many_pixels_are_refused_from_the_header() {
        let refusal = accept(Format::Png, png(100, 100, Rgba([0, 0, 0, 255])), 9_999).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::TooManyPixels {
                pixels: 10_000,
                limit: 9_999
            }
        );
    }

    #[test]
    fn variants_keep_the_aspect_ratio_and_never_upscale() {
        let original = jpeg(1000, 500);
        let small = decoded(&jpeg_variant(&original, Format::Jpeg, Some(320), LIMIT).unwrap());
        assert_eq!((small.width(), small.height()), (320, 160));
        let same = decoded(&jpeg_variant(&original, Format::Jpeg, Some(1200), LIMIT).unwrap());
        assert_eq!((same.width(), same.height()), (1000, 500));
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let transparent = png(8, 8, Rgba([0, 0, 0, 0]));
        let flat =
            decoded(&jpeg_variant(&transparent, Format::Png, None, LIMIT).unwrap()).into_rgb8();
        let Rgb([r, g, b]) = *flat.get_pixel(4, 4);
        assert!(r > 245 && g > 245 && b > 245, "{r} {g} {b}");
    }
}
