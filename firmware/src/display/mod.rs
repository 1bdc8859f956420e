//! The status screen: one drawing function generic over any monochrome embedded-graphics
//! `DrawTarget` (SSD1306, a framebuffer, a PNG file) so every target shows the same layout.
//! Laid out for 128×64; larger targets draw it at the top-left.

pub mod fb;
pub mod png;
#[cfg(feature = "ssd1306")]
pub mod ssd1306;

use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

use crate::stats::Status;

/// Draws `s` onto `d`: four text lines (fps and frames; p50/p99 embed latency; drops; model
/// or fine-tune loss) and an fps sparkline along the bottom.
///
/// # Errors
/// Whatever the target reports.
pub fn draw_status<D: DrawTarget<Color = BinaryColor>>(
    d: &mut D,
    s: &Status,
) -> Result<(), D::Error> {
    d.clear(BinaryColor::Off)?;
    let style = MonoTextStyle::new(&FONT_6X10, BinaryColor::On);
    let mut line = |y: i32, text: &str| {
        Text::with_baseline(text, Point::new(0, y), style, Baseline::Top)
            .draw(d)
            .map(|_| ())
    };
    let mut buf = heapless::String::<32>::new();
    use core::fmt::Write;
    let _ = write!(buf, "{:>5.1} fps {:>7}f", s.fps, s.frames);
    line(0, &buf)?;
    buf.clear();
    let _ = write!(buf, "p50 {:.1} p99 {:.1}ms", s.embed_p50_ms, s.embed_p99_ms);
    line(11, &buf)?;
    buf.clear();
    let _ = write!(
        buf,
        "drop q{} s{} bad{}",
        s.queue_drops, s.sink_drops, s.bad_frames
    );
    line(22, &buf)?;
    buf.clear();
    match s.finetune_loss {
        Some(loss) => {
            let _ = write!(buf, "ft loss {loss:.3}");
        }
        None => {
            let _ = write!(buf, "{}", s.model.as_str());
        }
    }
    line(33, &buf)?;
    // Sparkline: fps history scaled to the box 44..63.
    let frame = Rectangle::new(Point::new(0, 44), Size::new(128, 20));
    frame
        .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 1))
        .draw(d)?;
    let max = s.fps_history.iter().copied().fold(1e-3f32, f32::max);
    let n = s.fps_history.len();
    for (i, v) in s.fps_history.iter().enumerate() {
        let x = 2 + (i * 124 / n.max(1)) as i32;
        let h = ((v / max) * 16.0).round() as i32;
        Line::new(Point::new(x, 61), Point::new(x, 61 - h))
            .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 2))
            .draw(d)?;
    }
    Ok(())
}

/// A parsed `--display` value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DisplaySpec {
    /// No screen.
    None,
    /// A PNG rewritten at every refresh (headless boards, tests).
    Png(String),
    /// A Linux framebuffer device.
    Fb(String),
    /// An SSD1306 128×64 OLED on an I2C bus (cargo feature `ssd1306`).
    Ssd1306(String),
}

impl TryFrom<String> for DisplaySpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s.as_str(), ""));
        match kind {
            "none" => Ok(Self::None),
            "png" if !rest.is_empty() => Ok(Self::Png(rest.into())),
            "fb" if !rest.is_empty() => Ok(Self::Fb(rest.into())),
            "ssd1306" if !rest.is_empty() => Ok(Self::Ssd1306(rest.into())),
            _ => Err(format!(
                "unknown display `{s}`; use none, png:FILE, fb:/dev/fb0 or ssd1306:/dev/i2c-1"
            )),
        }
    }
}

impl From<DisplaySpec> for String {
    fn from(d: DisplaySpec) -> String {
        match d {
            DisplaySpec::None => "none".into(),
            DisplaySpec::Png(p) => format!("png:{p}"),
            DisplaySpec::Fb(p) => format!("fb:{p}"),
            DisplaySpec::Ssd1306(p) => format!("ssd1306:{p}"),
        }
    }
}

impl std::str::FromStr for DisplaySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_string())
    }
}

/// A screen the runtime refreshes.
pub trait Screen: Send {
    /// Shows `s`.
    ///
    /// # Errors
    /// A message naming the device.
    fn show(&mut self, s: &Status) -> Result<(), String>;
}

/// Opens the screen named by `spec` (`None` for `none`).
///
/// # Errors
/// A message naming the device and the fix.
pub fn open(spec: &DisplaySpec) -> Result<Option<Box<dyn Screen>>, String> {
    Ok(match spec {
        DisplaySpec::None => None,
        DisplaySpec::Png(p) => Some(Box::new(png::PngScreen::new(p.into()))),
        DisplaySpec::Fb(p) => Some(Box::new(fb::FbScreen::open(p)?)),
        #[cfg(feature = "ssd1306")]
        DisplaySpec::Ssd1306(p) => Some(Box::new(ssd1306::Ssd1306Screen::open(p)?)),
        #[cfg(not(feature = "ssd1306"))]
        DisplaySpec::Ssd1306(p) => {
            return Err(format!(
                "{p}: this edgeclr-device was built without the `ssd1306` feature; rebuild with --features ssd1306"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use embedded_graphics::mock_display::MockDisplay;

    use super::*;

    pub(crate) fn sample_status() -> Status {
        let mut s = Status {
            fps: 9.8,
            frames: 1234,
            queue_drops: 5,
            sink_drops: 0,
            bad_frames: 1,
            embed_p50_ms: 1.2,
            embed_p99_ms: 3.4,
            ..Status::default()
        };
        let _ = s.model.push_str("quickstart-3bc3256a");
        for i in 0..32 {
            let _ = s.fps_history.push(5.0 + (i % 8) as f32);
        }
        s
    }

    #[test]
    fn draws_on_embedded_graphics_mock_display() {
        // MockDisplay is 64×64 (the left half of the layout) and panics on overdraw unless
        // allowed; the whole 128×64 layout is checked against a golden PNG in `png`.
        let mut d: MockDisplay<BinaryColor> = MockDisplay::new();
        d.set_allow_overdraw(true);
        d.set_allow_out_of_bounds_drawing(true);
        draw_status(&mut d, &sample_status()).expect("draws");
        let area = d.affected_area();
        assert_eq!(area.top_left, Point::new(0, 0));
        assert_eq!(area.size, Size::new(64, 64), "{area:?}");
    }

    #[test]
    fn display_specs_parse() {
        assert_eq!("png:s.png".parse(), Ok(DisplaySpec::Png("s.png".into())));
        assert_eq!("none".parse(), Ok(DisplaySpec::None));
        assert!(
            "oled"
                .parse::<DisplaySpec>()
                .expect_err("unknown")
                .contains("ssd1306:/dev/i2c-1")
        );
    }
}
