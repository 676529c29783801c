//! Writes the request bodies the image benchmark sends: `{"image": "<data URL>"}` of a photo-like
//! JPEG (smooth gradients with grain, which compresses like a photograph, unlike flat colour or
//! pure noise).
//!
//! Usage: `bench <width> <height> <grain 0-255> <output.json>`; prints the JPEG's size in bytes.

use std::io::Cursor;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, width, height, grain, output] = args.as_slice() else {
        eprintln!("usage: bench <width> <height> <grain 0-255> <output.json>");
        std::process::exit(2);
    };
    let (width, height, grain): (u32, u32, u32) = (
        width.parse().expect("width"),
        height.parse().expect("height"),
        grain.parse().expect("grain"),
    );
    let mut seed = 0x9E37_79B9_u32;
    let photo = RgbImage::from_fn(width, height, |x, y| {
        // xorshift: cheap, deterministic grain.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = |shift: u32| ((seed >> shift) & 0xFF) * grain / 255;
        let channel = |base: u32, shift: u32| (base + noise(shift)).min(255) as u8;
        Rgb([
            channel(x * 200 / width, 0),
            channel(y * 200 / height, 8),
            channel((x + y) * 100 / (width + height), 16),
        ])
    });
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 90)
        .encode_image(&photo)
        .expect("JPEG encoding");
    let body = serde_json::json!({
        "image": format!("data:image/jpeg;base64,{}", STANDARD.encode(&jpeg))
    });
    std::fs::write(output, body.to_string()).expect("writable output");
    println!("{}", jpeg.len());
}
