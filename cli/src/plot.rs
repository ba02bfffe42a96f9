//! A small bar-chart renderer for `rask demo`: the histogram exercise asks
//! for a plot, and a PNG written without a plotting stack keeps the demo's
//! set-up to one command.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 420;
const MARGIN: u32 = 30;

/// Draws `counts` as bars scaled to the tallest one, with axes, into a PNG.
pub fn bar_chart(counts: &[i64], path: &Path) -> anyhow::Result<()> {
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    let mut put = |x: u32, y: u32, rgb: [u8; 3]| {
        if x < WIDTH && y < HEIGHT {
            let i = ((y * WIDTH + x) * 3) as usize;
            pixels[i..i + 3].copy_from_slice(&rgb);
        }
    };
    let plot_w = WIDTH - 2 * MARGIN;
    let plot_h = HEIGHT - 2 * MARGIN;
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = counts.len().max(1) as u32;
    for (i, &c) in counts.iter().enumerate() {
        let x0 = MARGIN + (i as u32 * plot_w) / n;
        let x1 = (MARGIN + ((i as u32 + 1) * plot_w) / n).max(x0 + 1);
        let h = ((c.max(0) as f64 / max) * plot_h as f64).round() as u32;
        for x in x0..x1.saturating_sub(1).max(x0 + 1) {
            for y in (HEIGHT - MARGIN - h)..(HEIGHT - MARGIN) {
                put(x, y, [31, 119, 180]);
            }
        }
    }
    for x in MARGIN..WIDTH - MARGIN {
        put(x, HEIGHT - MARGIN, [0, 0, 0]);
    }
    for y in MARGIN..=HEIGHT - MARGIN {
        put(MARGIN, y, [0, 0, 0]);
    }
    let file = BufWriter::new(File::create(path)?);
    let mut encoder = png::Encoder::new(file, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    Ok(())
}
