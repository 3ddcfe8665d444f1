#!/usr/bin/env bash
# Training on a lent GPU machine, which starts bare and offline, has torch, OpenCV and h5py but not
# kornia, runs a command for at most 10 minutes and returns files of at most 16 MiB:
#
#   here:   bash scripts/device_training.sh prepare [INIT_WEIGHTS]   # fills .device/ (git-ignored)
#   there:  bash scripts/device_training.sh run [SECONDS [ARGS]]     # carry [".device"]; results in $OUT
#
# prepare: kornia wheels for the machine's Python 3.12, the photo pool as grayscale JPEGs at their
# own resolution (what the training reads; so that everything travels within 64 MiB), and the
# weights to start from (default: the shipped lite.pt).
# run: times 25 steps of `lite_mix_large_gpu`, then trains it from those weights with a schedule of
# as many steps as SECONDS (default 400) allows at that speed (a deadline SIGTERM, which makes the
# trainer save, guards the command's limit); writes $OUT/lite.pt (fp16 moving average, to ship or
# to start the next run from), log.csv, val.csv, loss.png and train.log. ARGS go to the trainer
# (a dry run on a CPU: `OUT=outputs/dry-run bash scripts/device_training.sh run 20 --batch_size 1 --workers 1`).
set -euo pipefail
cd "$(dirname "$0")/.."
conf=lite_mix_large_gpu
case "${1:-}" in
prepare)
    mkdir -p .device/train_pool .device/whl
    versions=$(python -c 'from importlib.metadata import version as v; print("kornia==" + v("kornia"), "kornia_rs==" + v("kornia_rs"))')
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .device/whl $versions
    python - <<'PY'
from pathlib import Path

import cv2

from sfm_reweight.train.recipes import DEFAULT_PHOTOS

for path in sorted(DEFAULT_PHOTOS.iterdir()):
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is not None:
        cv2.imwrite(str(Path(".device/train_pool") / f"{path.stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
PY
    init="${2:-sfm_reweight/weights/lite.pt}"
    if [ -f "$init" ]; then cp "$init" .device/init.pt; fi
    du -sh .device
    ;;
run)
    python3 -c 'import kornia' 2>/dev/null || {
        site=$(mktemp -d)
        python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .device/whl/*.whl
        export PYTHONPATH="$site:${PYTHONPATH:-}"
    }
    export PYTHONUNBUFFERED=1
    seconds="${2:-400}"
    train=(python3 -m sfm_reweight.train.trainer --conf "$conf" --photos .device/train_pool "${@:3}")
    if [ -f .device/init.pt ]; then train+=(--init_from .device/init.pt); fi
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    # fresh folders: a rerun on a still-warm machine must not resume (or refuse) an earlier probe or run;
    # runs chain through the exported weights (.device/init.pt), not through last.pt
    work=$(mktemp -d)
    "${train[@]}" --output "$work/probe" --max_steps 25 > "$OUT/probe.log" 2>&1
    steps=$(python3 - "$seconds" "$work/probe" <<'PY'
import csv, statistics, sys

rows = list(csv.DictReader(open(sys.argv[2] + "/log.csv")))
per_step = statistics.median(float(r["seconds"]) for r in rows[10:])  # after the workers' start
print(f"{per_step:.3f} s/step over steps 11-{len(rows)}", file=sys.stderr)
print(int(float(sys.argv[1]) / per_step))
PY
)
    echo "schedule: $steps steps of $conf"
    # SIGTERM at the deadline to the trainer only (not its batch workers, whose death would abort the
    # save): it writes last.pt and exits (non-zero, hence `|| true`)
    timeout --foreground -k 60 -s TERM $((seconds + 90)) "${train[@]}" --steps "$steps" --output "$work/run" > "$OUT/train.log" 2>&1 || true
    tr '\r' '\n' < "$OUT/train.log" | grep -v "it/s" | tail -n 5 || true
    python3 -m sfm_reweight.train.trainer --output "$work/run" --export "$OUT/lite.pt"
    for f in log.csv loss.png val.csv; do if [ -f "$work/run/$f" ]; then cp "$work/run/$f" "$OUT"/; fi; done
    ;;
*)
    echo "usage: $0 prepare [INIT_WEIGHTS] | run [SECONDS [TRAINER ARGS]]" >&2
    exit 2
    ;;
esac
