# 2026-11-27, lent H200: seeds 1 and 2 of the default Lite2 recipe on split 0, one after the other, each alone with
# 14 loader workers, with the test-time flip in validation. The faces, face cache and wheels (no huggingface_hub:
# the machine's own 1.x is kept for its transformers) arrive in four parts (.gpux/p00..p03, moved to /tmp/recv), with
# the model folders moved out of the checkout for those calls (the tree that travels is capped at 64 MiB).
# Seed 3 ran in a second call on the same warm machine, the same training command with --seed 3 (env.txt, last line).
# The calibration figures these runs wrote came from the GPU; the shipped figures are refitted on the CPU.
set -u
OUT=${OUT:-/tmp/out}; R=/tmp/recv; mkdir -p $R $OUT /tmp/m; START=$(date +%s)
(cd $R && cat p00 p01 p02 p03 > bundle.tar && sha256sum bundle.tar && tar xf bundle.tar && tar xf faces.tar -C /tmp) > $OUT/env.txt 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $R/*.whl >> $OUT/env.txt 2>&1 || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1
mkdir -p .cache && tar xJf $R/cache.tar.xz -C .cache
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; echo "cpu cores: $(nproc)"; ls .cache/faces | wc -l
 python3 -c "import torch,timm,albumentations,datasets,accelerate,huggingface_hub;print('torch',torch.__version__,'cuda',torch.cuda.is_available(),'timm',timm.__version__,'albumentations',albumentations.__version__,'datasets',datasets.__version__,'accelerate',accelerate.__version__,'huggingface_hub',huggingface_hub.__version__)") >> $OUT/env.txt 2>&1
echo "setup $(( $(date +%s) - START )) s" >> $OUT/env.txt
for seed in 1 2; do
  LEFT=$(( ${BUDGET:-480} - ($(date +%s) - START) )); [ $LEFT -gt 120 ] || break
  SECONDS=0
  timeout $LEFT python3 -m training.train --config training/configs/effnet-lite2-resize224-procaug.json --data /tmp/faces \
      --num-workers 14 --mixed-precision bf16 --test-time-flip --seed $seed --output /tmp/m/lite2-s$seed > $OUT/train_s$seed.log 2>&1
  echo "train seed $seed exit $? wall ${SECONDS} s" >> $OUT/env.txt
  tar cf - -C /tmp/m --exclude=state.pt --exclude=checkpoint lite2-s$seed | split -b 15M -d - $OUT/lite2-s$seed.tar.
done
echo "total $(( $(date +%s) - START )) s" >> $OUT/env.txt
