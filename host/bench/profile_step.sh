#!/usr/bin/env bash
# Where a CPU training step's time goes, on this machine: `perf record` (software clock
# sampling, so it works on VMs without hardware counters) over issue 15's protocol (resnet8,
# batch 256, 32 px, 10k CIFAR-10 images, Adam, STEPS steps), then the top symbols by share of
# samples, and `lscpu`'s model and ISA line so the profile says which CPU it came from. The
# per-CPU tables in docs/backends.md ("CPU training speed") were made this way.
#
# Usage: host/bench/profile_step.sh [STEPS=12] [OUT_DIR=runs/profile-step]
# Needs perf (Debian: linux-perf) and kernel.perf_event_paranoid <= 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-12}"
out="${2:-runs/profile-step}"
edgeclr="${EDGECLR:-${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}/release/edgeclr}"
command -v perf >/dev/null || { echo "profile_step: perf missing (apt-get install linux-perf)" >&2; exit 1; }
[ -x "$edgeclr" ] || { echo "profile_step: $edgeclr missing; cargo build --release --workspace --all-targets" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
lscpu | grep -E "Model name|^CPU\(s\)" | tee "$out/cpu.txt"
grep -o -w -E "avx512f|avx512_vnni|amx_tile|avx2|fma" /proc/cpuinfo | sort -u | tr '\n' ' ' | tee -a "$out/cpu.txt"
echo
perf record -e cpu-clock -F 200 -o "$out/perf.data" -- "$edgeclr" pretrain \
  --data "${CIFAR:-../shared/data/cifar10}" --encoder resnet8 --batch-size 256 --image-size 32 \
  --train-limit 10000 --optimizer adam --lr 0.001 --temperature 0.5 --color-strength 0.5 \
  --no-blur --max-steps "$steps" --knn-every 0 --device cpu --out "$out/run" > /dev/null 2> "$out/run.log"
perf report -i "$out/perf.data" --no-children --sort symbol 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -25 | cut -c1-140 | tee "$out/top.txt"
