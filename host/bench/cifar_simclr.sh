#!/usr/bin/env bash
# Issue-3 benchmark: SimCLR pretraining of resnet8 on 10,000 CIFAR-10 images (CPU), then kNN and
# linear evaluation of the trained encoder next to a random-init encoder.
#   host/bench/cifar_simclr.sh [DATA_DIR] [RUN_DIR] [extra pretrain flags...]
# Writes RUN_DIR/{results.json,eval-knn.json,eval-linear.json,time-pretrain.txt,bench.json}.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}"
data="${1:-../shared/data/cifar10}"
run="${2:-runs/bench-cifar}"
shift $(( $# > 2 ? 2 : $# ))
cargo build --release --workspace --all-targets
bin="$CARGO_TARGET_DIR/release/edgeclr"
rm -rf "$run"
mkdir -p "$(dirname "$run")"
/usr/bin/time -v "$bin" pretrain --data "$data" --encoder resnet8 --batch-size 256 --train-limit 10000 \
  --epochs 10 --optimizer adam --lr 1e-3 --temperature 0.5 --color-strength 0.5 --no-blur \
  --device cpu --knn-every 1 --out "$run" "$@" 2> >(tee "$run.time.txt" >&2)
mv "$run.time.txt" "$run/time-pretrain.txt"
"$bin" eval --run "$run" --data "$data" --protocol knn --train-limit 10000 --device cpu
"$bin" eval --run "$run" --data "$data" --protocol linear --train-limit 10000 --device cpu
python3 - "$run" <<'PY'
import json, re, sys
run = sys.argv[1]
res = json.load(open(f"{run}/results.json"))
knn = json.load(open(f"{run}/eval-knn.json"))
lin = json.load(open(f"{run}/eval-linear.json"))
time_txt = open(f"{run}/time-pretrain.txt").read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_txt).group(1))
# resnet8 at 32x32 (CIFAR stem), multiply-accumulates of one forward pass:
macs = (32*32*32*3*9                      # stem 3->32
        + 2 * 32*32*32*32*9               # block 1
        + 16*16*64*32*9 + 16*16*64*64*9 + 16*16*64*32   # block 2 (+1x1 shortcut)
        + 8*8*128*64*9 + 8*8*128*128*9 + 8*8*128*64     # block 3 (+1x1 shortcut)
        + 128*128 + 128*128)              # MLP head
# training ~ 3x forward (forward + input grads + weight grads); 2 views per source image
flop_per_image = 2 * 3 * 2 * macs
ips = res["images_per_second"]
peak = 2 * 2.6e9 * 32  # 2 cores x 2.6 GHz x (2 FMA pipes x 8 fp32 lanes x 2 flop)
out = {
  "source_images_per_second": ips,
  "gflops_achieved": ips * flop_per_image / 1e9,
  "gflops_peak_fp32_assumed": peak / 1e9,
  "fraction_of_peak": ips * flop_per_image / peak,
  "peak_rss_mib": rss_kb / 1024,
  "knn": {k: knn[k]["test"] for k in ("pretrained", "random_init")},
  "linear": {k: {"train": lin[k]["train"], "test": lin[k]["test"]} for k in ("pretrained", "random_init")},
  "final_loss": res["final_loss"],
  "wall_seconds": res["wall_seconds"],
}
json.dump(out, open(f"{run}/bench.json", "w"), indent=2)
print(json.dumps(out, indent=2))
PY
