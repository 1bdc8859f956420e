#!/usr/bin/env bash
# Issue 15's same-sitting benchmark: edgeclr's CPU training (burn-flex) against the PyTorch +
# lightly reference on the same protocol, runs alternated so both see the same machine state.
#
# Protocol: resnet8, batch 256, 32 px, the first 10k CIFAR-10 training images, Adam 1e-3,
# tau 0.5, colour strength 0.5, no blur, STEPS steps; images/s = median over steps 3..STEPS-1
# of batch / step wall time (edgeclr's metrics.jsonl; the same per-step log from
# host/bench/peer_simclr.py). /usr/bin/time -v gives user and system time and peak RSS.
# Then the board fine-tuner's step (`edgeclr-device finetune-bench --board rpi5`: the code's
# default learner, batch 32, last block + head, 32 and 48 px) on the same sitting.
#
# The reference is installed from PyPI into $PEER_VENV (default ~/.cache/edgeclr/peer-venv),
# outside the repository: torch, torchvision and lightly (≈ 5 GB: PyPI's Linux torch wheel
# brings its CUDA libraries; they stay unused here). This script installs it when missing.
#
# Usage: host/bench/peer_speed.sh [STEPS=200] [ROUNDS=2] [OUT_DIR=runs/peer-speed]
# Environment: CIFAR (../shared/data/cifar10), EXPORT (runs/quickstart/export: the fine-tuner's
# model; made by `edgeclr quickstart`), EDGECLR / EDGECLR_DEVICE (the binaries; default the
# release build), BASELINE_EDGECLR / BASELINE_DEVICE (optional: an older build run as a third
# row of the same sitting, e.g. one without the burn-flex patch).
# Writes OUT_DIR/peer_speed.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-200}"
rounds="${2:-2}"
out="${3:-runs/peer-speed}"
cifar="${CIFAR:-../shared/data/cifar10}"
export_dir="${EXPORT:-runs/quickstart/export}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}"
edgeclr="${EDGECLR:-$target/release/edgeclr}"
device="${EDGECLR_DEVICE:-$target/release/edgeclr-device}"
venv="${PEER_VENV:-$HOME/.cache/edgeclr/peer-venv}"
for f in "$edgeclr" "$device"; do
  [ -x "$f" ] || { echo "peer_speed: $f missing; build with cargo build --release --workspace --all-targets" >&2; exit 1; }
done
[ -f "$export_dir/manifest.json" ] || { echo "peer_speed: $export_dir has no manifest.json; run edgeclr quickstart or set EXPORT" >&2; exit 1; }
if ! "$venv/bin/python" -c 'import torch, lightly' 2>/dev/null; then
  echo "peer_speed: installing torch, torchvision, lightly from PyPI into $venv (outside the repository)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check torch torchvision lightly
fi
mkdir -p "$out"
rows="$out/rows.jsonl"
: > "$rows"

# record NAME ROUND METRICS_JSONL TIME_FILE: one JSON row from a run's log and /usr/bin/time -v.
record() {
  python3 - "$@" "$steps" >> "$rows" <<'PY'
import json, re, statistics, sys
name, rnd, metrics, timing, steps = sys.argv[1:]
rows = [json.loads(l) for l in open(metrics)]
ips = [r["images_per_second"] for r in rows if "step" in r and "images_per_second" in r]
t = open(timing).read()
g = lambda k: float(re.search(k + r": ([0-9.]+)", t).group(1))
print(json.dumps({"engine": name, "round": int(rnd), "steps": len(ips),
  "images_per_second": statistics.median(ips[3:int(steps)]),
  "user_s": g(r"User time \(seconds\)"), "system_s": g(r"System time \(seconds\)"),
  "peak_rss_mib": g(r"Maximum resident set size \(kbytes\)") / 1024}))
PY
}

edgeclr_run() { # NAME BINARY ROUND
  local d="$out/$1-$3"
  rm -rf "$d"
  /usr/bin/time -v "$2" pretrain --data "$cifar" --encoder resnet8 --batch-size 256 \
    --image-size 32 --train-limit 10000 --optimizer adam --lr 0.001 --temperature 0.5 \
    --color-strength 0.5 --no-blur --max-steps "$steps" --knn-every 0 --device cpu \
    --seed "$3" --out "$d" > /dev/null 2> "$d.time"
  record "$1" "$3" "$d/metrics.jsonl" "$d.time"
}

pytorch_run() { # ROUND
  local d="$out/pytorch-$1"
  /usr/bin/time -v "$venv/bin/python" host/bench/peer_simclr.py "$cifar" "$d.jsonl" \
    --steps "$steps" --threads "$(nproc)" > /dev/null 2> "$d.time"
  record pytorch "$1" "$d.jsonl" "$d.time"
}

finetune_run() { # NAME BINARY SIZE
  "$2" finetune-bench --board rpi5 --model "$export_dir" --batch 32 --size "$3" --steps 10 --threads "$(nproc)" \
    | python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); r["engine"]=sys.argv[1]; print(json.dumps(r))' "$1" \
    >> "$rows"
}

for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds: edgeclr, pytorch${BASELINE_EDGECLR:+, baseline} ($steps steps each)" >&2
  edgeclr_run edgeclr "$edgeclr" "$r"
  pytorch_run "$r"
  [ -z "${BASELINE_EDGECLR:-}" ] || edgeclr_run baseline "$BASELINE_EDGECLR" "$r"
done
for size in 32 48; do
  finetune_run finetune "$device" "$size"
  [ -z "${BASELINE_DEVICE:-}" ] || finetune_run finetune-baseline "$BASELINE_DEVICE" "$size"
done

python3 - "$rows" "$out/peer_speed.json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if "user_s" in r]
tune = [r for r in rows if "step_ms_median" in r]
med = lambda e, k: statistics.median(r[k] for r in train if r["engine"] == e)
engines = sorted({r["engine"] for r in train})
summary = {e: {k: med(e, k) for k in ("images_per_second", "user_s", "system_s", "peak_rss_mib")} for e in engines}
ratio = summary["edgeclr"]["images_per_second"] / summary["pytorch"]["images_per_second"]
print("engine     round  images/s   user s  system s  sys/user  peak RSS MiB")
for r in train:
    print(f"{r['engine']:<10} {r['round']:>5} {r['images_per_second']:>9.1f} {r['user_s']:>8.1f} {r['system_s']:>9.1f}"
          f" {r['system_s'] / r['user_s']:>9.2f} {r['peak_rss_mib']:>13.0f}")
print(f"edgeclr / pytorch images/s (medians) = {ratio:.2f}")
for r in tune:
    print(f"{r['engine']:<18} {r['size']} px: median step {r['step_ms_median']:.0f} ms, peak RSS {r['peak_rss_mib']:.0f} MiB")
json.dump({"rows": rows, "medians": summary, "edgeclr_over_pytorch": ratio}, open(sys.argv[2], "w"), indent=1)
PY
