//! `ssd1306:/dev/i2c-N` — a 128×64 SSD1306 OLED over I2C (address 0x3C) through
//! `linux-embedded-hal`, in buffered-graphics mode. Built with cargo feature `ssd1306`.

use linux_embedded_hal::I2cdev;
use ssd1306::mode::BufferedGraphicsMode;
use ssd1306::prelude::*;
use ssd1306::{I2CDisplayInterface, Ssd1306};

use super::{Screen, draw_status};
use crate::stats::Status;

/// The OLED.
pub struct Ssd1306Screen {
    bus: String,
    display:
        Ssd1306<I2CInterface<I2cdev>, DisplaySize128x64, BufferedGraphicsMode<DisplaySize128x64>>,
}

impl Ssd1306Screen {
    /// Opens the bus and initialises the panel.
    ///
    /// # Errors
    /// A message naming the bus (enable I2C with raspi-config; check `i2cdetect -y 1`).
    pub fn open(bus: &str) -> Result<Self, String> {
        let i2c = I2cdev::new(bus).map_err(|e| {
            format!("{bus}: {e}; enable I2C (raspi-config) and check `i2cdetect -y 1` shows 3c")
        })?;
        let mut display = Ssd1306::new(
            I2CDisplayInterface::new(i2c),
            DisplaySize128x64,
            DisplayRotation::Rotate0,
        )
        .into_buffered_graphics_mode();
        display
            .init()
            .map_err(|e| format!("{bus}: SSD1306 init failed: {e:?}"))?;
        Ok(Self {
            bus: bus.into(),
            display,
        })
    }
}

impl Screen for Ssd1306Screen {
    fn show(&mut self, s: &Status) -> Result<(), String> {
        draw_status(&mut self.display, s).map_err(|e| format!("{}: {e:?}", self.bus))?;
        self.display
            .flush()
            .map_err(|e| format!("{}: {e:?}", self.bus))
    }
}
