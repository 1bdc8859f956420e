#!/usr/bin/env bash
# Issue 18: peak RSS of `edgeclr pretrain` streaming tar shards stays flat when the data set
# is 10× larger, against the same run with the data set decoded into memory.
#   host/bench/shards_rss.sh [DATA_DIR] [OUT_DIR] [STEPS]
# Writes OUT_DIR/x1 and OUT_DIR/x10 (shards; x10 repeats every sample 10 times), one run per
# case and OUT_DIR/rss.json; prints the table. Needs ~1.3 GB of disk for CIFAR-10's 28k images.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}"
data="${1:-../shared/data/cifar10}"
out="${2:-runs/shards-rss}"
steps="${3:-115}"
cargo build --release --workspace --all-targets
bin="$CARGO_TARGET_DIR/release/edgeclr"
mkdir -p "$out"
[ -f "$out/x1/shards.json" ] || "$bin" shard --data "$data" --out "$out/x1" --per-shard 1000
[ -f "$out/x10/shards.json" ] || "$bin" shard --data "$data" --out "$out/x10" --per-shard 1000 --repeat 10
common=(--encoder resnet8 --batch-size 256 --image-size 32 --knn-every 0 --device cpu --max-steps "$steps" --seed 0)
rows=()
for case in memory x1 x10; do
  src="$out/$case"; [ "$case" = memory ] && src="$data"
  rm -rf "$out/run-$case"
  /usr/bin/time -f '%M' -o "$out/rss-$case.txt" "$bin" pretrain --data "$src" --out "$out/run-$case" "${common[@]}" > /dev/null 2>"$out/run-$case.log"
  kib=$(tail -1 "$out/rss-$case.txt")
  samples=$(python3 -c "import json,sys; print(sum(s['samples'] for s in json.load(open('$src/shards.json'))['shards']))" 2>/dev/null || echo "in memory")
  ips=$(python3 -c "import json; print(round(json.load(open('$out/run-$case/results.json'))['images_per_second'], 1))")
  rows+=("{\"case\": \"$case\", \"samples\": \"$samples\", \"peak_rss_mib\": $((kib / 1024)), \"images_per_second\": $ips}")
done
printf '[%s]\n' "$(IFS=,; echo "${rows[*]}")" | tee "$out/rss.json"
python3 - "$out/rss.json" <<'PY'
import json, sys
r = {x["case"]: x for x in json.load(open(sys.argv[1]))}
print("| data | samples | peak RSS MiB | images/s |")
print("|---|---|---|---|")
for c in ("memory", "x1", "x10"):
    print(f"| {c} | {r[c]['samples']} | {r[c]['peak_rss_mib']} | {r[c]['images_per_second']} |")
print(f"x10 ÷ x1 peak RSS: {r['x10']['peak_rss_mib'] / r['x1']['peak_rss_mib']:.2f}")
PY
