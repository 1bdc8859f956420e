#!/usr/bin/env bash
# Issue-4 benchmark: export a trained run at 32×32 and 96×96 (fp32 ONNX/NNEF, int8 QLinearConv
# and QDQ), then time tract (our embedder) and onnxruntime on the same files in one session,
# batch 1, single thread and all cores, and print the ratios. Also checks every ONNX file with
# onnx.checker and the tract fp32 embeddings against onnxruntime on 256 real CIFAR-10 images.
#   host/bench/export_speed.sh [RUN_DIR] [OUT_DIR] [DATA_DIR]
# Installs onnxruntime/onnx/numpy from PyPI into a venv (~/.cache/edgeclr/ort-venv).
# Writes OUT_DIR/{p32,p96}/ (exports), tract.jsonl, profile-p96.jsonl (tract's per-op
# profile), ort.jsonl, speed.json, parity.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}"
run="${1:-runs/bench-cifar}"
out="${2:-runs/export-bench}"
data="${3:-../shared/data/cifar10}"
venv="$HOME/.cache/edgeclr/ort-venv"
cargo build --release --workspace --all-targets
bin="$CARGO_TARGET_DIR/release/edgeclr"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import onnxruntime, onnx, numpy, tract' 2>/dev/null \
  || "$venv/bin/pip" install -q onnxruntime onnx numpy "tract==0.23.9"
mkdir -p "$out"
# The venv's libonnxruntime is also what our onnxruntime embedder loads (embed_speed times
# both engines), so the Python and Rust figures run the same library.
ORT_DYLIB_PATH=$("$venv/bin/python" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')
export ORT_DYLIB_PATH
for size in 32 96; do
  "$bin" export --run "$run" --out "$out/p$size" --image-size "$size" --int8 \
    --calib-data "$data" --calib-n 256 --check-n 256
done
"$bin" embed --model "$out/p32/encoder.onnx" --data "$data" --split test --limit 256 --out "$out/tract-p32.npy"
# cargo runs benches from the package folder: pass absolute paths.
cargo bench --workspace --bench embed_speed -- "$(realpath "$out/p32")" "$(realpath "$out/p96")" | tee "$out/tract.jsonl"
# tract's per-op profile of every 96 px file (docs/export.md, "Per-op profile").
cargo bench --workspace --bench tract_profile -- "$(realpath "$out/p96")" > "$out/profile-p96.jsonl"
"$venv/bin/python" host/bench/ort_speed.py --data "$data" --tract-npy "$out/tract-p32.npy" \
  --out "$out" "$out/p32" "$out/p96"
# Small batches per engine (issue 17, item 4).
for size in 32 96; do "$venv/bin/python" host/bench/batch_speed.py "$out/p$size"; done | tee "$out/batch.jsonl"
