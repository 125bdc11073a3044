# Train the two Lite2 configs on the lent GPU; data arrives in three parts (.gpux/p00..p02) of one bundle.
set -u
OUT=${OUT:-/tmp/out}; R=/tmp/recv; mkdir -p $R $OUT /tmp/m; START=$(date +%s)
mv .gpux/p0* $R/ 2>/dev/null
(cd $R && cat p00 p01 p02 > bundle.tar && sha256sum bundle.tar && tar xf bundle.tar) > $OUT/env.txt 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $R/*.whl >> $OUT/env.txt 2>&1 || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1
mkdir -p .cache && tar xJf $R/cache.tar.xz -C .cache && tar xJf $R/faces.tar.xz -C /tmp
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; echo "cpu cores: $(nproc)"; ls /tmp/faces | head -20
 python3 -c "import torch,timm,albumentations,datasets,accelerate;print('torch',torch.__version__,'cuda',torch.cuda.is_available(),'timm',timm.__version__,'albumentations',albumentations.__version__,'datasets',datasets.__version__,'accelerate',accelerate.__version__)") >> $OUT/env.txt 2>&1
echo "setup $(( $(date +%s) - START )) s" >> $OUT/env.txt
for cfg in effnet-lite2-resize224 effnet-lite2-resize224-procaug; do
  LEFT=$(( ${BUDGET:-555} - ($(date +%s) - START) )); [ $LEFT -gt 60 ] || break
  SECONDS=0
  timeout $LEFT python3 -m training.train --config training/configs/$cfg.json --data /tmp/faces --num-workers 14 \
      --mixed-precision bf16 --output /tmp/m/$cfg > $OUT/train_$cfg.log 2>&1
  echo "train $cfg exit $? wall ${SECONDS} s" >> $OUT/env.txt
  tar cf - -C /tmp/m --exclude=state.pt $cfg | split -b 15M -d - $OUT/$cfg.tar.
done
echo "total $(( $(date +%s) - START )) s" >> $OUT/env.txt
