//! The built-in board profiles (`hardware/boards/*.toml`) and the target each board runs:
//! shared by the board runtime (which parses them) and the bundler (which ships them).

/// A built-in board: name, Rust target triple of its `edgeclr-device`, profile TOML.
pub const BOARDS: &[(&str, &str, &str)] = &[
    (
        "x86-dev",
        "x86_64-unknown-linux-gnu",
        include_str!("../../../hardware/boards/x86-dev.toml"),
    ),
    (
        "rpi4",
        "aarch64-unknown-linux-gnu",
        include_str!("../../../hardware/boards/rpi4.toml"),
    ),
    (
        "rpi5",
        "aarch64-unknown-linux-gnu",
        include_str!("../../../hardware/boards/rpi5.toml"),
    ),
    (
        "jetson-nano",
        "aarch64-unknown-linux-gnu",
        include_str!("../../../hardware/boards/jetson-nano.toml"),
    ),
    (
        "jetson-orin-nano",
        "aarch64-unknown-linux-gnu",
        include_str!("../../../hardware/boards/jetson-orin-nano.toml"),
    ),
];

/// The `(target triple, profile TOML)` of board `name`.
///
/// # Errors
/// Names the known boards.
pub fn board(name: &str) -> Result<(&'static str, &'static str), String> {
    BOARDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, toml)| (*t, *toml))
        .ok_or_else(|| {
            format!(
                "unknown board `{name}`; known: {}",
                BOARDS
                    .iter()
                    .map(|(n, _, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The systemd unit shipped in bundles.
pub const SYSTEMD_UNIT: &str = include_str!("../../../hardware/systemd/edgeclr-device.service");
