#!/usr/bin/env bash
# The allocator's effect on CPU pretraining, alternated in one sitting: the issue-15 protocol
# (resnet8, batch 256, 32 px, 10k CIFAR-10 images, Adam 1e-3, tau 0.5, s 0.5, no blur,
# STEPS steps; median images/s of steps 3..STEPS from metrics.jsonl), one binary run two ways:
#   tuned   as it ships: glibc's malloc keeps freed memory in one heap (models/runtime/src/allocator.rs)
#   glibc   glibc's malloc as it comes (GLIBC_TUNABLES names a malloc setting that changes
#           nothing, perturb=0, so edgeclr leaves malloc alone)
# plus, with BASELINE=/path/to/edgeclr, another build (e.g. an older one on mimalloc).
# Usage: host/bench/allocator.sh [STEPS] [ROUNDS] [CIFAR10_DIR]   (20, 3, ../shared/data/cifar10)
# Environment: EDGECLR (default: the release build), BASELINE (optional).
set -euo pipefail
absolute() { [ -z "$1" ] || realpath -m "$1"; }
steps="${1:-20}" rounds="${2:-3}"
data=$(absolute "${3:-$(dirname "$0")/../../../shared/data/cifar10}")
edgeclr=$(absolute "${EDGECLR:-${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}/release/edgeclr}")
BASELINE=$(absolute "${BASELINE:-}")
[ -x "$edgeclr" ] || { echo "allocator: $edgeclr missing; build with .ci/build" >&2; exit 1; }
out=$(mktemp -d /tmp/edgeclr-allocator.XXXXXX)
trap 'rm -rf "$out"' EXIT
variants=(tuned glibc ${BASELINE:+baseline})

run() { # VARIANT ROUND
  local d="$out/$1-$2" bin="$edgeclr" env=()
  case "$1" in
    glibc) env=(GLIBC_TUNABLES=glibc.malloc.perturb=0) ;;
    baseline) bin="$BASELINE" ;;
  esac
  env ${env[@]+"${env[@]}"} /usr/bin/time -v "$bin" pretrain --data "$data" --encoder resnet8 \
    --batch-size 256 --image-size 32 --train-limit 10000 --optimizer adam --lr 0.001 \
    --temperature 0.5 --color-strength 0.5 --no-blur --max-steps "$steps" --knn-every 0 \
    --device cpu --seed 1 --out "$d" > /dev/null 2> "$d.time"
  python3 - "$d" "$1" "$2" <<'PY'
import json, re, statistics, sys
d, v, r = sys.argv[1:]
rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
ips = statistics.median([x["images_per_second"] for x in rows if x.get("step", 0) >= 3
                         and "images_per_second" in x])
t = open(d + ".time").read()
g = lambda k: float(re.search(k + r": ([0-9.]+)", t).group(1))
print(f"{v:9} round {r}: {ips:6.1f} images/s, user {g('User time .seconds.'):6.1f} s, "
      f"sys {g('System time .seconds.'):5.1f} s, peak RSS "
      f"{g('Maximum resident set size .kbytes.') / 1024:5.0f} MiB, minor faults "
      f"{g('Minor .reclaiming a frame. page faults'):9.0f}")
PY
}

for round in $(seq 1 "$rounds"); do
  for v in "${variants[@]}"; do run "$v" "$round"; done
done
