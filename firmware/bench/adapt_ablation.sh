#!/usr/bin/env bash
# The learner study of issue 16: one `firmware/bench/adapt.sh` run per learner choice, same
# factory model, camera, budget and duty cycle, then one table.
#
#   firmware/bench/adapt_ablation.sh FACTORY_EXPORT DOMAIN_DIR SECONDS OUT_DIR [ROW…]
#
# Each row is NAME=SETTINGS with SETTINGS a comma-separated list of profile settings (`--set`),
# applied on top of the board profile (BOARD, default x86-dev) and `finetune.duty_cycle=1.0`
# (DUTY overrides). Without ROW arguments the rows below run. The host upper bound is skipped
# (UPPER=0) except where UPPER=1 is exported. Writes OUT_DIR/<name>/adapt.json per row and
# OUT_DIR/ablation.json, and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 4 ] || { sed -n 2,11p "$0" >&2; exit 2; }
factory="$1" domain="$2" seconds="$3" out="$4"
shift 4
rows=("$@")
if [ ${#rows[@]} -eq 0 ]; then
  rows=(
    "profile="
    "bn-statistics-only=finetune.trainer.trainable_blocks=0,finetune.trainer.adapt_bn_stats=true"
    "no-bn-adaptation=finetune.trainer.adapt_bn_stats=false"
    "no-distillation=finetune.trainer.distill_weight=0.0"
    "lr-1e-3=finetune.trainer.lr=1e-3"
    "reservoir=finetune.replay=reservoir"
    "fifo=finetune.replay=fifo"
    "no-temporal-positives=finetune.trainer.temporal_positives=false"
    "train-48px=finetune.image_size=48"
  )
fi
for row in "${rows[@]}"; do
  [[ "$row" =~ ^[A-Za-z0-9_.-]+= ]] || { echo "ablation: row \`$row\` is not NAME=SETTINGS" >&2; exit 2; }
done
mkdir -p "$out"
for row in "${rows[@]}"; do
  name="${row%%=*}"
  settings="${row#*=}"
  [ -f "$out/$name/adapt.json" ] && { echo "ablation: $name done already" >&2; continue; }
  rm -rf "${out:?}/$name"
  echo "ablation: $name (${settings:-profile defaults})" >&2
  SET="finetune.duty_cycle=${DUTY:-1.0} ${settings//,/ }" UPPER="${UPPER:-0}" \
    firmware/bench/adapt.sh "$factory" "$domain" "$seconds" "$out/$name"
done
python3 - "$out" "${rows[@]}" <<'PY'
import json, sys
out, rows = sys.argv[1], sys.argv[2:]
table = []
print("| learner | settings | target kNN | Δ vs factory | source kNN Δ | steps | promoted / rejected | judge agreement |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for row in rows:
    name, settings = row.split("=", 1)
    a = json.load(open(f"{out}/{name}/adapt.json"))
    g = a["judge_agreement"]
    rate = "–" if g["rate"] is None else f"{g['rate']:.2f}"
    a["name"], a["settings"] = name, settings
    table.append(a)
    print(f"| {name} | `{settings or '(profile)'}` | {a['knn_adapted']:.2f} | {a['knn_adapted'] - a['knn_factory']:+.2f} "
          f"| {a['knn_source_adapted'] - a['knn_source_factory']:+.2f} | {a['steps']} "
          f"| {a['promotions']} / {a['rejections']} | {rate} |")
json.dump(table, open(f"{out}/ablation.json", "w"), indent=1)
PY
