#!/usr/bin/env bash
# The image track's first GPU experiment, prepared for a lent GPU machine (torch preinstalled, no network;
# runs from the source tree). From the repository root:
#
#   DATA=path/to/fashion-mnist OUT=runs/gpu bash image_track/gpu_experiment.sh
#
# 1. `memdiff bench image` (fp32 / bf16, eager / compiled), unless BENCH=0;
# 2. standard (EDM) against ambient (hybrid_ambient, SIGMA_N) training at each n in NS, each one paired
#    theory-vs-trained run (`memdiff image paired`: M(sigma), sigma_C, closed-form copy rate, r(sigma),
#    memorization and FD in OUT/<loss>_n<n>/paired.json and paired_figure.png);
# 3. one summary line per run in OUT/summary.jsonl.
# Knobs: STEPS (training steps per run, default 5000), SIGMA_N (0.2), NS ("300 1000"), FLAGS (flags for every
# run; default "--bf16 --compile"; tests pass a tiny CPU configuration here).
set -euo pipefail
: "${DATA:?set DATA to the folder holding the four Fashion-MNIST IDX .gz files}"
OUT=${OUT:-runs/gpu}
STEPS=${STEPS:-5000}
SIGMA_N=${SIGMA_N:-0.2}
NS=${NS:-"300 1000"}
FLAGS=${FLAGS:-"--bf16 --compile"}
PY=${PYTHON:-python}
mkdir -p "$OUT"
if [ "${BENCH:-1}" = 1 ]; then
  "$PY" -m memdiff.cli bench image --out "$OUT/bench_image.json" | tee "$OUT/bench_image.txt"
fi
: > "$OUT/summary.jsonl.tmp"
for n in $NS; do
  for loss in edm hybrid_ambient; do
    extra=()
    [ "$loss" = hybrid_ambient ] && extra=(--sigma-n "$SIGMA_N")
    # shellcheck disable=SC2086  # FLAGS is a list of flags
    "$PY" -m memdiff.cli image paired --data-path "$DATA" --n "$n" --loss "$loss" "${extra[@]}" --steps "$STEPS" \
      $FLAGS --out "$OUT/${loss}_n$n"
    "$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({'loss': sys.argv[2], 'n': int(sys.argv[3]), **r['summary']}))" \
      "$OUT/${loss}_n$n/paired.json" "$loss" "$n" >> "$OUT/summary.jsonl.tmp"
  done
done
mv "$OUT/summary.jsonl.tmp" "$OUT/summary.jsonl"
cat "$OUT/summary.jsonl"
