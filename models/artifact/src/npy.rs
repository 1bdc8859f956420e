//! The `.npy` format (version 1.0) header, shared by `edgeclr embed` and the board's npy
//! sink: `\x93NUMPY`, version, header length, a Python dict literal padded so the data
//! starts on a 64-byte boundary.

/// The header of a C-order little-endian array of `descr` (`<f4`, `<i4`) with `shape`.
pub fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + dict + '\n' is a multiple of 64.
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_matches_numpy() {
        // numpy: np.save(f, np.zeros((2, 3), '<f4')) writes this dict, padded to 64 bytes.
        let h = header("<f4", &[2, 3]);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([h[8], h[9]]) as usize;
        assert_eq!(h.len(), 10 + len);
        assert_eq!(h.len() % 64, 0);
        let dict = std::str::from_utf8(&h[10..]).expect("ascii");
        assert_eq!(
            dict.trim_end(),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        );
        assert!(dict.ends_with('\n'));
        let one = header("<i4", &[5]);
        assert!(
            std::str::from_utf8(&one[10..])
                .expect("ascii")
                .contains("'shape': (5,)")
        );
    }
}
