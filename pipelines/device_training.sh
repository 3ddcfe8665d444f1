#!/usr/bin/env bash
# Training on a lent GPU machine, which starts bare and offline, has torch, OpenCV and h5py but not
# kornia, runs a command for at most 10 minutes and returns files of at most 16 MiB:
#
#   here:   bash pipelines/device_training.sh prepare [INIT_WEIGHTS]   # fills .device/ (git-ignored)
#   there:  bash pipelines/device_training.sh run [SECONDS]            # carry [".device"]; results in $OUT
#
# prepare: kornia wheels for the machine's Python 3.12, the photo pool downsized to 640 px (so that
# everything travels within 64 MiB), and the weights to start from (default: the shipped lite.pt).
# run: trains `lite-mix-gpu` from those weights for SECONDS (default 420), then SIGTERM makes the
# trainer save; writes $OUT/lite.pt (fp16 moving average, to ship or to start the next run from),
# log.csv, val.csv and loss.png.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
    mkdir -p .device/train_pool .device/whl
    grep -qx '/.device/' .git/info/exclude || echo '/.device/' >> .git/info/exclude
    versions=$(python -c 'from importlib.metadata import version as v; print("kornia==" + v("kornia"), "kornia_rs==" + v("kornia_rs"))')
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .device/whl $versions
    python - <<'PY'
from pathlib import Path

import cv2

from sfm_reweight.train.trainer import DEFAULT_PHOTOS

for path in sorted(DEFAULT_PHOTOS.iterdir()):
    image = cv2.imread(str(path))
    if image is None:
        continue
    scale = min(1.0, 640 / max(image.shape[:2]))
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(Path(".device/train_pool") / f"{path.stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
PY
    init="${2:-sfm_reweight/weights/lite.pt}"
    if [ -f "$init" ]; then cp "$init" .device/init.pt; fi
    du -sh .device
    ;;
run)
    python3 -c 'import kornia' 2>/dev/null || {
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/whl/*.whl
        export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
    }
    export PYTHONUNBUFFERED=1
    init=()
    if [ -f .device/init.pt ]; then init=(--init-from .device/init.pt); fi
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    # SIGTERM at the deadline: the trainer writes last.pt and exits (non-zero, hence `|| true`)
    timeout -s TERM "${2:-420}" python3 -m sfm_reweight.train.trainer --conf lite-mix-gpu --output /tmp/run \
        --photos .device/train_pool "${init[@]}" || true
    python3 -m sfm_reweight.train.trainer --output /tmp/run --export "$OUT/lite.pt"
    for f in log.csv loss.png val.csv; do if [ -f "/tmp/run/$f" ]; then cp "/tmp/run/$f" "$OUT"/; fi; done
    ;;
*)
    echo "usage: $0 prepare [INIT_WEIGHTS] | run [SECONDS]" >&2
    exit 2
    ;;
esac
