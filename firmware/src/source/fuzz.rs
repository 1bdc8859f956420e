//! Bounded fuzzing (proptest, run by `cargo test`) of what a camera or a recording feeds the
//! runtime: the MJPEG splitter and the JPEG decoder, on two real frames of the shipped clip
//! with random byte edits, splices and cuts, and on random bytes. Nothing may panic; every
//! split frame is an in-order, non-overlapping `FF D8 … FF D9` slice of the stream; a frame
//! that decodes has the size its SOF header declares (so a header edit cannot make the decoder
//! hand out a buffer of another size).

use std::path::Path;
use std::sync::LazyLock;
use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::Index;

use super::replay::split_jpegs;
use crate::frame::{Frame, PixelFormat};

/// Inputs tried per property (docs/reliability.md reports them).
const CASES: u32 = 1500;

/// The first two frames of the shipped clip.
static TWO_FRAMES: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let clip =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/camera/clip_320x240.mjpeg");
    let bytes = std::fs::read(clip).expect("the shipped clip");
    let frames = split_jpegs(&bytes);
    frames[..2].concat()
});

/// Splits `stream`, checks the slices, decodes each.
fn split_and_decode(stream: &[u8]) -> Result<(), TestCaseError> {
    let mut from = 0;
    for (id, f) in split_jpegs(stream).into_iter().enumerate() {
        let at = f.as_ptr() as usize - stream.as_ptr() as usize;
        prop_assert!(at >= from, "frame {} overlaps the previous one", id);
        prop_assert!(f.len() >= 4 && f.starts_with(&[0xFF, 0xD8]) && f.ends_with(&[0xFF, 0xD9]));
        from = at + f.len();
        let frame = Frame {
            id: id as u64,
            captured: Instant::now(),
            width: 0,
            height: 0,
            format: PixelFormat::Mjpeg,
            data: f.to_vec(),
        };
        if let (Ok(rgb), Some(size)) = (frame.to_rgb(), sof_size(f)) {
            prop_assert_eq!((rgb.width(), rgb.height()), size);
        }
    }
    Ok(())
}

/// `(width, height)` from the first SOF0–SOF2 segment (baseline, extended and progressive
/// Huffman: the frames the decoder reads), walking the marker segments from SOI (fill bytes
/// `FF FF` skipped, as the standard allows; any other segment, other SOFn included, skipped by
/// its length as the decoder does); `None` when the walk breaks first.
fn sof_size(jpeg: &[u8]) -> Option<(usize, usize)> {
    let be16 = |i: usize| {
        Some(usize::from(u16::from_be_bytes([
            *jpeg.get(i)?,
            *jpeg.get(i + 1)?,
        ])))
    };
    let mut i = 2;
    loop {
        if *jpeg.get(i)? != 0xFF {
            return None;
        }
        while *jpeg.get(i + 1)? == 0xFF {
            i += 1;
        }
        match jpeg[i + 1] {
            0xC0..=0xC2 => {
                return Some((be16(i + 7)?, be16(i + 5)?));
            }
            0xDA | 0xD9 => return None,
            _ => i += 2 + be16(i + 2)?,
        }
    }
}

/// Found by CI: a COM marker (`FF FE`) flipped to SOF13 (`FF CD`, arithmetic coding) ahead
/// of the real SOF0. The decoder skips the segment it cannot decode and reads the SOF0, so the
/// frame is 320×240; the oracle once took the COM payload for a size.
#[test]
fn an_unsupported_sof_ahead_of_the_real_one_is_skipped() {
    let mut bytes = TWO_FRAMES.clone();
    let second = split_jpegs(&TWO_FRAMES)[0].len();
    assert_eq!(&bytes[second + 2..second + 4], &[0xFF, 0xFE]);
    bytes[second + 3] = 0xCD;
    assert_eq!(sof_size(&bytes[second..]), Some((320, 240)));
    split_and_decode(&bytes).expect("the edited stream splits and decodes consistently");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn edited_streams_never_panic(
        edits in prop::collection::vec((any::<Index>(), 1u8..), 1..8),
        splice in prop::option::of((any::<Index>(), prop::collection::vec(any::<u8>(), 1..64))),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut bytes = TWO_FRAMES.clone();
        for (at, x) in &edits {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some((at, insert)) = &splice {
            let i = at.index(bytes.len());
            bytes.splice(i..i, insert.iter().copied());
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        split_and_decode(&bytes)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(0xFF), Just(0xD8), Just(0xD9)], 0..4096)) {
        split_and_decode(&bytes)?;
    }
}
