#!/usr/bin/env bash
# Does on-device fine-tuning adapt a model to a shifted camera? (issue 16)
#
#   firmware/bench/adapt.sh FACTORY_EXPORT DOMAIN_DIR SECONDS OUT_DIR
#
# FACTORY_EXPORT  an `edgeclr export` folder with its burn weights (the shipped model).
# DOMAIN_DIR      the shifted camera: stream.mjpeg (what the board sees), and labelled
#                 train/<class>/ (the kNN bank) and test/<class>/ image folders. Labels are used
#                 for scoring only; the board never sees them.
# SECONDS         how long the board streams and fine-tunes.
#
# 1. scores the factory model on DOMAIN_DIR (kNN top-1, tract, the manifest's preprocessing)
#    and on the source data (CIFAR-10 test, to show forgetting);
# 2. streams DOMAIN_DIR/stream.mjpeg through `edgeclr-device run --finetune --loop` for SECONDS
#    with the board profile's settings at its camera frame rate, keeping every candidate;
# 3. scores every candidate (promoted or not) and the model `current` points to at the end,
#    and how often the board's label-free judge agreed with the labels (`edgeclr eval --state`);
# 4. the upper bound: the same encoder trained on the host with continued SimCLR
#    (`edgeclr pretrain --init`) on DOMAIN_DIR/train/ (unlabelled) for as many steps of the
#    same batch as the board took;
# and writes OUT_DIR/adapt.json and OUT_DIR/adapt.png (target kNN against time).
#
# Environment:
#   BOARD=x86-dev            board profile the run uses
#   SET="k=v …"              extra profile settings (`--set`), e.g. "finetune.duty_cycle=1.0"
#   SOURCE=../shared/data/cifar10  source data set (CIFAR-10 binaries)
#   SOURCE_BANK=3000         class-balanced source bank size (the whole test split is scored)
#   UPPER=1                  0 skips the host upper bound (knn_upper is then null)
#   UPPER_LR=1e-3            Adam learning rate of the upper bound
#   EDGECLR, EDGECLR_DEVICE  the binaries (default: the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 4 ] || { sed -n 2,30p "$0" >&2; exit 2; }
factory="$1" domain="$2" seconds="$3" out="$4"
board="${BOARD:-x86-dev}"
source_data="${SOURCE:-../shared/data/cifar10}"
source_bank="${SOURCE_BANK:-3000}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/edgeclr/target}"
edgeclr="${EDGECLR:-$target/release/edgeclr}"
device="${EDGECLR_DEVICE:-$target/release/edgeclr-device}"
die() { echo "adapt: $*" >&2; exit 1; }
for f in "$edgeclr" "$device"; do
  [ -x "$f" ] || die "$f missing; build with .ci/build"
done
[ -f "$factory/manifest.json" ] && [ -f "$factory/encoder.bpk" ] \
  || die "$factory is not an export folder with burn weights (edgeclr export --run RUN --out DIR)"
[ -f "$domain/stream.mjpeg" ] && [ -d "$domain/train" ] && [ -d "$domain/test" ] \
  || die "$domain needs stream.mjpeg, train/<class>/ and test/<class>/"
[ -e "$out/state" ] && die "$out already holds a run; choose another OUT_DIR"
mkdir -p "$out"
sets=(--set finetune.keep_candidates=true)
read -ra extra <<< "${SET:-}"
for s in ${extra[@]+"${extra[@]}"}; do sets+=(--set "$s"); done

knn() { # MODEL DATA [eval flags…] → kNN top-1
  "$edgeclr" eval --model "$1" --data "$2" --protocol knn --json "${@:3}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["model_result"]["test"]["top1"])'
}
echo "adapt: scoring the factory model" >&2
knn_factory=$(knn "$factory" "$domain")
knn_source_factory=$(knn "$factory" "$source_data" --train-limit "$source_bank")

echo "adapt: streaming $domain/stream.mjpeg through the board for $seconds s (board $board ${SET:-})" >&2
"$device" run --board "$board" "${sets[@]}" --model "$factory" --state "$out/state" --finetune \
  --source "mjpeg:$domain/stream.mjpeg" --loop --duration "$seconds" --report "$out/run.json" \
  --sink jsonl:/dev/null --display none 2> "$out/run.log" \
  || die "edgeclr-device run failed; see $out/run.log"

echo "adapt: scoring every candidate" >&2
"$edgeclr" eval --state "$out/state" --data "$domain" --protocol knn --plot "$out/adapt.png" \
  > "$out/candidates.json"
pointer=$(readlink "$out/state/current") || die "$out/state has no current model; see $out/run.log"
current="$out/state/slots/$(basename "$pointer")"
knn_source_adapted=$(knn "$current" "$source_data" --train-limit "$source_bank")

read -r steps batch < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["finetune"]["steps"], r["finetune"]["batch"])
' "$out/run.json")
knn_upper=null
if [ "${UPPER:-1}" = 1 ] && [ "$steps" -gt 0 ]; then
  echo "adapt: upper bound: continued SimCLR on the host, $steps steps of $batch" >&2
  images=$(find "$domain/train" -type f | wc -l)
  per_epoch=$(( images / batch ))   # edgeclr pretrain's steps per epoch
  [ "$per_epoch" -gt 0 ] || die "$domain/train holds fewer images ($images) than one batch ($batch)"
  epochs=$(( (steps + per_epoch - 1) / per_epoch ))
  "$edgeclr" pretrain --init "$factory" --data "$domain" --dataset folder --batch-size "$batch" \
    --epochs "$epochs" --max-steps "$steps" --optimizer adam --lr "${UPPER_LR:-1e-3}" \
    --warmup-epochs 0 --knn-every 0 --device cpu --out "$out/upper" 2> "$out/upper.log" \
    || die "upper bound: edgeclr pretrain failed; see $out/upper.log"
  "$edgeclr" export --run "$out/upper" --out "$out/upper/export" 2>> "$out/upper.log" >/dev/null \
    || die "upper bound: edgeclr export failed; see $out/upper.log"
  knn_upper=$(knn "$out/upper/export" "$domain")
fi

python3 - "$out" "$knn_factory" "$knn_source_factory" "$knn_source_adapted" "$knn_upper" \
  "$board" "$seconds" "${SET:-}" <<'PY'
import json, sys
out, kf, ksf, ksa, ku, board, seconds, sets = sys.argv[1:]
run = json.load(open(f"{out}/run.json"))
cand = json.load(open(f"{out}/candidates.json"))
ft = run["finetune"]
num = lambda s: None if s == "null" else float(s)
decisions = ft["decisions"]
report = {
    "board": board, "seconds": float(seconds), "set": sets.split(),
    "knn_factory": float(kf),
    "knn_adapted": (cand["current"]["knn"] or {}).get("top1"),
    "knn_upper": num(ku),
    "knn_source_factory": float(ksf),
    "knn_source_adapted": float(ksa),
    "steps": ft["steps"],
    "promotions": sum(d["accepted"] for d in decisions),
    "rejections": sum(not d["accepted"] for d in decisions),
    "judge_agreement": cand["agreement"],
    "step_p50_ms": ft["step_p50_ms"],
    "busy_fraction": ft["busy_fraction"],
    "stream_fps": run.get("fps"),
    "peak_rss_mib": run.get("peak_rss_mib"),
    "current": cand["current"]["slot"],
    "candidates": [
        {k: d[k] for k in ("candidate", "step", "at_s", "accepted", "knn", "running_knn")}
        for d in cand["decisions"]
    ],
}
json.dump(report, open(f"{out}/adapt.json", "w"), indent=1)
a = report["judge_agreement"]
if report["knn_adapted"] is None:
    sys.exit(f"adapt: the current model of {out}/state could not be scored; see candidates.json")
print(f"target kNN: factory {report['knn_factory']:.2f}  adapted {report['knn_adapted']:.2f} "
      f"({report['knn_adapted'] - report['knn_factory']:+.2f})  upper {report['knn_upper']}")
print(f"source kNN: factory {ksf}  adapted {ksa}  ({float(ksa) - float(ksf):+.2f})")
print(f"steps {report['steps']}  promotions {report['promotions']}  rejections {report['rejections']}  "
      f"judge agreed {a['rate'] if a['rate'] is None else round(a['rate'], 2)} ({a['promotions_that_helped']}/{a['promotions']} promotions helped, "
      f"{a['rejections_that_were_better']}/{a['rejections']} rejected were better)")
PY
