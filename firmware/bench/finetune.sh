#!/usr/bin/env bash
# Issue-6 benchmark: on-device fine-tuning measured on this machine.
#  1. Domain adaptation: export a CIFAR-10-pretrained run, fine-tune it on a street clip with
#     `edgeclr-device run --finetune` (distillation on, then off), and report label-free health
#     on the clip and kNN top-1 on the CIFAR-10 test set before and after.
#  2. Fine-tune step time and peak RSS at batch 32, 32×32 and 64×64, CPU (burn-flex) and wgpu
#     (whatever adapter wgpu finds: a software one in CI, so its timings are not hardware
#     numbers), one process per configuration (RSS is a process high-water mark).
#  3. The embedding stream's fps with fine-tuning off vs on, in one process.
#   firmware/bench/finetune.sh [RUN_DIR] [OUT_DIR] [CIFAR_DIR] [CLIP] [SECONDS]
# Writes OUT_DIR/{adapt.json, steps.jsonl, stream.json} and the state folders.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}"
run="${1:-runs/bench-cifar}"
out="${2:-runs/finetune-bench}"
data="${3:-../shared/data/cifar10}"
clip="${4:-../shared/data/camera/vtest_320x240.mjpeg}"
seconds="${5:-240}"
cargo build --release --workspace --all-targets
bin="$CARGO_TARGET_DIR/release"
mkdir -p "$out"

# 1. Domain adaptation.
"$bin/edgeclr" export --run "$run" --out "$out/export" --int8 --calib-n 256 --check-n 64 >/dev/null
knn() { # $1: folder with encoder.bpk → kNN top-1 on the CIFAR-10 test set
  local d="$out/eval-$(basename "$1")"
  mkdir -p "$d" && cp "$run/config.toml" "$1/encoder.bpk" "$d/"
  "$bin/edgeclr" eval --run "$d" --data "$data" --protocol knn --json
}
health() { "$bin/edgeclr-device" health --model "$1" --source "mjpeg:$clip" --every 5; }
before_health="$(health "$out/export")"
before_knn="$(knn "$out/export")"
results=()
for distill in 1 0; do
  st="$out/state-distill$distill"
  rm -rf "$st"
  "$bin/edgeclr-device" run --model "$out/export" --state "$st" --finetune \
    --finetune-device cpu --distill-weight "$distill" --source "mjpeg:$clip" --loop \
    --duration "$seconds" --report "$out/run-distill$distill.json" 2>"$out/run-distill$distill.log"
  slot="$st/slots/$(basename "$(readlink "$st/current")")"
  results+=("{\"distill_weight\": $distill, \"final_model\": \"$(basename "$slot")\", \"health\": $(health "$slot"), \"knn\": $(knn "$slot"), \"run\": $(cat "$out/run-distill$distill.json")}")
done
printf '{"clip": "%s", "seconds": %s, "before": {"health": %s, "knn": %s}, "after": [%s]}\n' \
  "$clip" "$seconds" "$before_health" "$before_knn" "$(IFS=,; echo "${results[*]}")" > "$out/adapt.json"

# 2. Step time and peak RSS.
: > "$out/steps.jsonl"
for device in cpu wgpu; do
  for size in 32 64; do
    "$bin/edgeclr-device" finetune-bench --model "$out/export" --source "mjpeg:$clip" \
      --batch 32 --size "$size" --device "$device" --steps 5 >> "$out/steps.jsonl" \
      || echo "{\"device\": \"$device\", \"size\": $size, \"error\": \"failed (see stderr)\"}" >> "$out/steps.jsonl"
  done
done

# 3. Stream fps, fine-tuning off vs on.
"$bin/edgeclr-device" bench --finetune --model "$out/export" --source "mjpeg:$clip" \
  --state "$out/state-stream" --seconds 20 > "$out/stream.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
a = json.load(open(f"{out}/adapt.json"))
h0, k0 = a["before"]["health"]["health"], a["before"]["knn"]
def top1(k): return k["pretrained"]["test"]["top1"] if "pretrained" in k else k["test"]["top1"]
print(f"before: alignment {h0['alignment']:.4f} uniformity {h0['uniformity']:.4f} erank {h0['effective_rank']:.2f} kNN {top1(k0):.2f}")
for r in a["after"]:
    h = r["health"]["health"]
    ft = r["run"]["finetune"]
    acc = sum(d["accepted"] for d in ft["decisions"])
    print(f"distill {r['distill_weight']}: steps {ft['steps']} candidates {len(ft['decisions'])} promoted {acc} -> "
          f"alignment {h['alignment']:.4f} uniformity {h['uniformity']:.4f} erank {h['effective_rank']:.2f} "
          f"kNN {top1(r['knn']):.2f} (Δ {top1(r['knn']) - top1(k0):+.2f})")
for line in open(f"{out}/steps.jsonl"):
    s = json.loads(line)
    print(s.get("backend", s.get("device")), s.get("size"), "ms/step", s.get("step_ms_median"), "peak RSS MiB", s.get("peak_rss_mib"), s.get("error", ""))
s = json.load(open(f"{out}/stream.json"))
for k in ("as_fast_as_possible", "native_rate"):
    print(k, f"off {s[k]['off']['fps']:.1f} fps, on {s[k]['on']['fps']:.1f} fps, on/off {s[k]['on_over_off']:.3f}",
          f"p99 latency off {s[k]['off']['latency_p99_ms']:.1f} on {s[k]['on']['latency_p99_ms']:.1f} ms")
PY
