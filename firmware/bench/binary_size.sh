#!/usr/bin/env bash
# What the board binary weighs: the stripped `edgeclr-device` per feature set and target, and
# the crates it links (`cargo tree -e normal`, unique). Each variant is its own feature
# resolution, so the first run of a variant compiles its dependencies (aarch64 with `gpu`:
# burn-wgpu, cubecl, naga). The default variant is built last, so the binary `.ci/run`'s ARM
# tests use is the default one afterwards.
#
# Usage: firmware/bench/binary_size.sh [OUT.json]      (default runs/binary-size.json)
#        VARIANTS="aarch64:inference aarch64:default" firmware/bench/binary_size.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}"
out="${1:-runs/binary-size.json}"
mkdir -p "$(dirname "$out")" runs/binary-size
variants="${VARIANTS:-x86_64:inference x86_64:default aarch64:inference aarch64:gpu aarch64:default}"

features_of() {
  case "$1" in
    inference) echo "--no-default-features --features camera" ;;
    default) echo "" ;;
    gpu) echo "--features gpu" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

echo "[" > "$out.tmp"
first=1
for v in $variants; do
  arch=${v%%:*}; name=${v#*:}
  triple="$arch-unknown-linux-gnu"
  read -r -a feats <<< "$(features_of "$name")"
  if [ "$arch" = aarch64 ]; then
    .ci/build-arm ${feats[@]+"${feats[@]}"} >&2
    bin="$CARGO_TARGET_DIR/$triple/release/edgeclr-device"; strip=aarch64-linux-gnu-strip
  else
    cargo build --release -p edgeclr-firmware ${feats[@]+"${feats[@]}"} >&2
    bin="$CARGO_TARGET_DIR/release/edgeclr-device"; strip=strip
  fi
  copy="runs/binary-size/edgeclr-device.$arch.$name"
  cp "$bin" "$copy"
  "$strip" "$copy"
  bytes=$(stat -c %s "$copy")
  crates=$(cargo tree -p edgeclr-firmware --target "$triple" -e normal --prefix none -f '{p}' \
    ${feats[@]+"${feats[@]}"} | sed 's/ (\*)//' | sort -u | wc -l)
  awk -v v="$v" -v b="$bytes" -v c="$crates" 'BEGIN { printf "%s: stripped %.1f MB, %s crates\n", v, b / 1e6, c }'
  [ $first = 1 ] || echo "," >> "$out.tmp"
  first=0
  printf '  {"target": "%s", "variant": "%s", "features": "%s", "stripped_bytes": %s, "crates": %s}' \
    "$triple" "$name" "${feats[*]:-default}" "$bytes" "$crates" >> "$out.tmp"
done
printf '\n]\n' >> "$out.tmp"
# `-p edgeclr-firmware` builds for x86 replaced target/release/edgeclr-device with their
# variant; put the workspace build (what the tests and `./edgeclr-device` run) back.
case " $variants" in *" x86_64:"*) .ci/build >&2 ;; esac
mv "$out.tmp" "$out"
echo "results: $out"
