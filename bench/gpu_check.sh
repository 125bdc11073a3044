#!/usr/bin/env bash
# GPU check: both default training configs (random init, a few epochs, bf16) and hub_utils.detect on a data folder.
#   DATA=path/to/faces OUT=out_dir EPOCHS=3 WORKERS=12 bash bench/gpu_check.sh
# Writes env.txt (GPU, versions, wall times), each run's training_log.jsonl and training output, and detect.csv.
set -u
DATA=${DATA:?set DATA to a folder tree like ../shared/data/faces}
OUT=${OUT:-bench/results/gpu_check}; RUNS=$(mktemp -d); mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; echo "cpu cores: $(nproc)"
 python3 -c "import torch,timm,albumentations,datasets,transformers,accelerate;print('torch',torch.__version__,'cuda',torch.cuda.is_available(),'timm',timm.__version__,'albumentations',albumentations.__version__,'datasets',datasets.__version__,'transformers',transformers.__version__,'accelerate',accelerate.__version__)") 2>&1 | tee "$OUT/env.txt"
COMMON="--data $DATA --pretrained none --epochs ${EPOCHS:-3} --num-workers ${WORKERS:-12} --mixed-precision ${MP:-bf16}"
for cfg in resize192 crop128; do
  SECONDS=0
  python3 -m training.train --config training/configs/effnet-lite0-$cfg.json $COMMON --output "$RUNS/$cfg" > "$OUT/train_$cfg.log" 2>&1
  echo "train $cfg exit $? wall ${SECONDS} s" | tee -a "$OUT/env.txt"
  cp "$RUNS/$cfg/training_log.jsonl" "$OUT/log_$cfg.jsonl"
done
SECONDS=0
python3 -m hub_utils.detect "$DATA" --model "$RUNS/resize192" --model "$RUNS/crop128" --ensemble --output "$OUT/detect.csv" > "$OUT/detect.log" 2>&1
echo "detect exit $? wall ${SECONDS} s" | tee -a "$OUT/env.txt"
