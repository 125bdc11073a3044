#!/usr/bin/env bash
# Inference speed on a GPU machine (#40): bench.inference on CUDA (faces found there, bf16 forward) for every default
# model, then the detect CLI on the same files in fp32 and bf16 (the EfficientNet soup: its weights travel), then the
# tests that need CUDA (faces found there match the CPU's; bf16 engaged and close to fp32).
#
#   bash bench/gpu_inference.sh prepare    # here, once: IMAGES (768) files of ../shared/data/faces into
#                                          # .cache/bench_faces, the facenet-pytorch wheel into .whl (both ignored)
#   OUT=dir bash bench/gpu_inference.sh    # there, with .whl and .cache/bench_faces carried: about 5 minutes
#
# Writes $OUT/env.txt, $OUT/inference_gpu.json (commit it as bench/results/inference_gpu.json), $OUT/bench.log and
# $OUT/detect_{fp32,bf16}.{csv,log}. The CLIP tower's 345 MB of weights cannot travel with the working tree (64 MiB), so
# the CLIP model runs on a random stand-in of its architecture (the same computation; the entry says so) unless
# DEEPFAKE_BACKBONE names the weights there. Set DEVICE=cpu PRECISION=fp32 to try the script on a machine without one.
set -uo pipefail
IMAGES=${IMAGES:-768}
FACES=.cache/bench_faces
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
export DEEPFAKE_BACKBONE_NO_FETCH=1

if [ "${1:-}" = prepare ]; then
  rm -rf "$FACES" && mkdir -p "$FACES" .whl || exit 1
  python3 - "$IMAGES" "$FACES" <<'EOF' || exit 1
import shutil, sys, tempfile
from pathlib import Path
from bench.inference import FACES_DIR, bench_images
if not FACES_DIR.is_dir():
    sys.exit(f"{FACES_DIR} not found: the GPU run needs real faces")
with tempfile.TemporaryDirectory() as tmp:
    for i, path in enumerate(bench_images(int(sys.argv[1]), Path(tmp))):
        shutil.copy(path, Path(sys.argv[2]) / f"{i:05d}.jpg")
EOF
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl facenet-pytorch==2.5.3 || exit 1
  du -sh "$FACES" .whl
  exit 0
fi

OUT=${OUT:?set OUT to the folder for the results}
mkdir -p "$OUT"
if [ -n "$(ls .whl/*.whl 2>/dev/null)" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
STAND_IN=$([ -z "${DEEPFAKE_BACKBONE:-}" ] && echo --stand-in-backbone)
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; echo "cpu cores: $(nproc)"
 python3 -c "import torch, timm, facenet_pytorch, PIL; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'timm', timm.__version__, 'pillow', PIL.__version__)"
 echo "images: $(ls $FACES | wc -l) in $FACES") 2>&1 | tee "$OUT/env.txt"

SECONDS=0
timeout 300 python3 -m bench.inference --device "$DEVICE" --precision "$PRECISION" --images "$IMAGES" \
  --faces "$FACES" --threads "$(nproc)" $STAND_IN --output "$OUT/inference_gpu.json" 2>&1 | tee "$OUT/bench.log"
echo "bench.inference exit ${PIPESTATUS[0]} wall ${SECONDS} s" | tee -a "$OUT/env.txt"

for precision in fp32 "$PRECISION"; do
  SECONDS=0
  timeout 90 python3 -m hub_utils.detect "$FACES" --model models/effnet-lite2-resize224-soup --device "$DEVICE" \
    --precision "$precision" --batch-size 128 --output "$OUT/detect_$precision.csv" > "$OUT/detect_$precision.log" 2>&1
  echo "detect $precision exit $? wall ${SECONDS} s ($IMAGES files, model load included)" | tee -a "$OUT/env.txt"
done
python3 - "$OUT" "$PRECISION" <<'EOF' 2>&1 | tee -a "$OUT/env.txt"
import csv, sys
from pathlib import Path
out, precision = Path(sys.argv[1]), sys.argv[2]
read = lambda p: {(r["path"], r["face"]): r for r in csv.DictReader((out / f"detect_{p}.csv").open())}
a, b = read("fp32"), read(precision)
shared = [k for k in a if k in b and a[k]["fake_probability"] and b[k]["fake_probability"]]
diffs = [abs(float(a[k]["fake_probability"]) - float(b[k]["fake_probability"])) for k in shared]
flips = sum(a[k]["verdict"] != b[k]["verdict"] for k in shared)
print(f"detect fp32 vs {precision}: {len(shared)} rows, max |dP| {max(diffs, default=0):.4f}, "
      f"mean {sum(diffs) / max(1, len(diffs)):.5f}, verdict flips {flips}")
EOF
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_faces.py tests/test_detector.py -k cuda 2>&1 \
  | tail -4 | tee -a "$OUT/env.txt"
