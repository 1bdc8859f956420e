#!/usr/bin/env bash
# The allocator's effect on CPU pretraining, alternated in one sitting: the issue-15 protocol
# (resnet8, batch 256, 32 px, 10k CIFAR-10 images, Adam 1e-3, tau 0.5, s 0.5, no blur,
# 12 steps; median images/s of steps 3-12 from metrics.jsonl) with two `edgeclr` binaries:
#   /tmp/edgeclr-glibc     built without host/src/main.rs's #[global_allocator]
#   /tmp/edgeclr-mimalloc  built as the repository is (cp target/release/edgeclr)
# Usage: host/bench/allocator.sh [CIFAR10_DIR]      (default ../shared/data/cifar10)
set -euo pipefail
D="${1:-$(cd "$(dirname "$0")/../../../shared/data/cifar10" && pwd)}"
for round in 1 2; do
  for v in glibc mimalloc; do
    out=/tmp/alloc/$v-$round; rm -rf $out; mkdir -p /tmp/alloc
    /usr/bin/time -v /tmp/edgeclr-$v pretrain --data $D --encoder resnet8 --batch-size 256 --image-size 32 \
      --train-limit 10000 --optimizer adam --lr 0.001 --temperature 0.5 --color-strength 0.5 --no-blur \
      --max-steps 12 --knn-every 0 --device cpu --out $out > /dev/null 2> $out.time
    python3 - "$out" "$v" "$round" <<'PY'
import json,sys,re,statistics
out,v,r=sys.argv[1:]
rows=[json.loads(l) for l in open(out+"/metrics.jsonl")]
ips=statistics.median([x["images_per_second"] for x in rows if 3<=x["step"]<=12])
t=open(out+".time").read()
g=lambda k: re.search(k+r": ([0-9.]+)",t).group(1)
print(f"{v} round {r}: {ips:.1f} images/s, user {g('User time .seconds.')} s, sys {g('System time .seconds.')} s, peak RSS {int(g('Maximum resident set size .kbytes.'))/1024:.0f} MiB, minor faults {g('Minor .reclaiming a frame. page faults')}")
PY
  done
done
