#!/usr/bin/env bash
# On-device adaptation across a suite of shifted cameras (issue 32): one
# `firmware/bench/adapt.sh` run per domain — same factory model, board profile, budget and
# settings — then one table with the design and held-out domains reported separately.
#
#   firmware/bench/adapt_suite.sh FACTORY_EXPORT SUITE_DIR SECONDS OUT_DIR [DOMAIN…]
#
# SUITE_DIR holds one domain folder per camera (`firmware/bench/make_suite.py`), each in
# adapt.sh's layout; a domain argument may also be a path to a folder elsewhere (e.g.
# ../shared/data/camera-night). Without DOMAIN arguments every folder of SUITE_DIR runs.
# Each domain's split (design / held-out) is read from its camera.txt (make_suite.py's SPLIT);
# a folder without one counts as design (camera-night is where the learner was first built).
# The environment passes through to adapt.sh (BOARD, SET, UPPER, …). A domain whose
# OUT_DIR/<name>/adapt.json exists is not run again, so an interrupted suite resumes.
# Writes OUT_DIR/suite.json and prints a Markdown table with the issue's bars: every domain
# ≥ factory, CIFAR-10 forgetting ≤ 1 point, mean gain as a share of the host upper bound's.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 4 ] || { sed -n 2,17p "$0" >&2; exit 2; }
factory="$1" suite="$2" seconds="$3" out="$4"
shift 4
domains=("$@")
if [ ${#domains[@]} -eq 0 ]; then
  for d in "$suite"/*/; do domains+=("$(basename "$d")"); done
fi
[ ${#domains[@]} -gt 0 ] || { echo "adapt_suite: no domains in $suite" >&2; exit 2; }
mkdir -p "$out"
paths=()
for d in "${domains[@]}"; do
  if [ -d "$d" ]; then path="$d"; else path="$suite/$d"; fi
  [ -f "$path/stream.mjpeg" ] || { echo "adapt_suite: $path has no stream.mjpeg" >&2; exit 2; }
  paths+=("$path")
done
for path in "${paths[@]}"; do
  name=$(basename "$path")
  [ -f "$out/$name/adapt.json" ] && { echo "adapt_suite: $name done already" >&2; continue; }
  rm -rf "${out:?}/$name"
  echo "adapt_suite: $name" >&2
  firmware/bench/adapt.sh "$factory" "$path" "$seconds" "$out/$name"
done
python3 - "$out" "${paths[@]}" <<'PY'
import json, os, sys
out, paths = sys.argv[1], sys.argv[2:]
rows = []
for path in paths:
    name = os.path.basename(os.path.normpath(path))
    a = json.load(open(f"{out}/{name}/adapt.json"))
    camera = os.path.join(path, "camera.txt")
    split = "design"
    if os.path.exists(camera) and "held-out" in open(camera).read():
        split = "held-out"
    a["domain"], a["split"] = name, split
    rows.append(a)
json.dump(rows, open(f"{out}/suite.json", "w"), indent=1)

def fmt(v, sign=False):
    return "–" if v is None else (f"{v:+.2f}" if sign else f"{v:.2f}")

print("| domain | split | factory | adapted | Δ | upper Δ | source Δ | steps | promoted / rejected | judge agreed |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for split in ("design", "held-out"):
    part = [r for r in rows if r["split"] == split]
    for r in part:
        d = r["knn_adapted"] - r["knn_factory"]
        up = None if r["knn_upper"] is None else r["knn_upper"] - r["knn_factory"]
        src = r["knn_source_adapted"] - r["knn_source_factory"]
        g = r["judge_agreement"]["rate"]
        print(f"| {r['domain']} | {split} | {r['knn_factory']:.2f} | {r['knn_adapted']:.2f} | {d:+.2f} "
              f"| {fmt(up, True)} | {src:+.2f} | {r['steps']} | {r['promotions']} / {r['rejections']} "
              f"| {fmt(g)} |")
for split in ("design", "held-out"):
    part = [r for r in rows if r["split"] == split]
    if not part:
        continue
    gains = [r["knn_adapted"] - r["knn_factory"] for r in part]
    uppers = [r["knn_upper"] - r["knn_factory"] for r in part if r["knn_upper"] is not None]
    forget = [r["knn_source_adapted"] - r["knn_source_factory"] for r in part]
    mean = sum(gains) / len(gains)
    share = ""
    if len(uppers) == len(part) and sum(uppers) > 0:
        share = f", {100 * mean / (sum(uppers) / len(uppers)):.0f} % of the upper bound's mean {sum(uppers) / len(uppers):+.2f}"
    print(f"\n{split}: {len(part)} domains, mean gain {mean:+.2f}{share}; worst domain {min(gains):+.2f}; "
          f"worst source Δ {min(forget):+.2f}; domains below factory: {sum(g < 0 for g in gains)}")
PY
