#!/usr/bin/env bash
# Issue 18's device check, for a machine with an NVIDIA GPU: resnet18 (CIFAR stem), batch 512,
# 32 px, STEPS steps of SimCLR on --device cuda and on --device wgpu (the same GPU through
# Vulkan), the first 3 losses of each against burn-flex on the CPU (same seed, same batches),
# images/s (median over steps 5..STEPS-1), peak GPU memory (nvidia-smi, sampled every 0.5 s),
# and the PyTorch reference (torchvision resnet18, CIFAR stem, the same batch and loss) on the
# same GPU when `torch` imports in $PEER_VENV (see host/bench/peer_speed.sh).
#   host/bench/gpu_check.sh [STEPS=300] [OUT_DIR=runs/gpu-check]
# Writes OUT_DIR/gpu_check.json and prints a table. Fails (exit 1) without nvidia-smi.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-300}"
out="${2:-runs/gpu-check}"
cifar="${CIFAR:-../shared/data/cifar10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}"
command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi; this check needs an NVIDIA GPU" >&2; exit 1; }
# The CUDA backend is opt-in (its build downloads LLVM; docs/backends.md).
cargo build --release --workspace --all-targets --features edgeclr-learn/cuda
bin="$CARGO_TARGET_DIR/release/edgeclr"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
recipe=(--data "$cifar" --encoder resnet18 --stem cifar --batch-size 512 --image-size 32
        --optimizer adam --lr 0.001 --warmup-epochs 0 --seed 0 --knn-every 0)
peak_mem() { # runs "$@" while sampling the GPU's used memory; prints the peak in MiB
  local log="$1"; shift
  ( while sleep 0.5; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > "$log" &
  local sampler=$!
  "$@" || { kill "$sampler"; return 1; }
  kill "$sampler"
  sort -n "$log" | tail -1
}
for dev in cuda wgpu; do
  rm -rf "$out/$dev"
  mem=$(peak_mem "$out/$dev-mem.txt" "$bin" pretrain "${recipe[@]}" --device "$dev" --max-steps "$steps" --out "$out/$dev" 2>"$out/$dev.log")
  echo "$mem" > "$out/$dev-peak-mib.txt"
done
rm -rf "$out/flex"
"$bin" pretrain "${recipe[@]}" --device cpu --max-steps 3 --out "$out/flex" 2>"$out/flex.log"
torch_ips=null
peer="${PEER_VENV:-$HOME/.cache/edgeclr/peer-venv}/bin/python"
if [ -x "$peer" ] && "$peer" -c 'import torch, torchvision; assert torch.cuda.is_available()' 2>/dev/null; then
  torch_ips=$("$peer" - "$steps" <<'PY'
import statistics, sys, time, torch, torch.nn as nn, torch.nn.functional as F, torchvision
steps = int(sys.argv[1])
m = torchvision.models.resnet18(num_classes=128)
m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = nn.Identity()
m.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
m = m.cuda(); opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.randn(1024, 3, 32, 32, device="cuda")
def ntxent(z, t=0.5):
    z = F.normalize(z, dim=1); n = z.shape[0] // 2
    s = z @ z.t() / t; s.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).cuda()
    return F.cross_entropy(s, target)
per = []
for i in range(steps):
    torch.cuda.synchronize(); t = time.perf_counter()
    loss = ntxent(m(x)); opt.zero_grad(); loss.backward(); opt.step()
    torch.cuda.synchronize(); per.append(512 / (time.perf_counter() - t))
print(statistics.median(per[5:]))
PY
)
fi
python3 - "$out" "$steps" "$torch_ips" <<'PY'
import json, statistics, sys
out, steps, torch_ips = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def losses(run):
    rows = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]
    return [r for r in rows if "loss" in r and "step" in r]
flex = [r["loss"] for r in losses("flex")][:3]
res = {"steps": steps, "gpu": open(f"{out}/gpu.txt").read().strip(), "flex_first_losses": flex,
       "pytorch_images_per_second": None if torch_ips == "null" else float(torch_ips)}
for dev in ("cuda", "wgpu"):
    rows = losses(dev)
    ips = statistics.median(r["images_per_second"] for r in rows[5:])
    first = [r["loss"] for r in rows[:3]]
    res[dev] = {"images_per_second": ips, "first_losses": first,
                "max_abs_loss_diff_vs_flex": max(abs(a - b) for a, b in zip(first, flex)),
                "peak_gpu_mib": float(open(f"{out}/{dev}-peak-mib.txt").read().strip()),
                "device": json.load(open(f"{out}/{dev}/results.json"))["device"]}
    if res["pytorch_images_per_second"]:
        res[dev]["ratio_to_pytorch"] = ips / res["pytorch_images_per_second"]
json.dump(res, open(f"{out}/gpu_check.json", "w"), indent=1)
print(json.dumps(res, indent=1))
PY
