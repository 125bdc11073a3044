# 2026-11-27, lent H200 (16 CPU cores): two more seeds of the default Lite2 config on the same split (split seed 0),
# run in parallel with 7 loader workers each, after the data, face cache and wheels arrived in four parts.
# The machine's own huggingface_hub (1.x) was used: the carried 2.4 wheel breaks its transformers 5.17 and was removed.
# Both runs were stopped by the 450 s time box after epoch 5 (log_seed1.jsonl, log_seed2.jsonl): in parallel each
# epoch took 72-106 s (training steps 6-8 s after the first epoch, training_steps.txt; the rest validation) against
# 9-11 s for the one run of 2026-11-26.
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1
mkdir -p .cache && tar xf /tmp/recv/cache.tar -C .cache
START=$(date +%s); LEFT=${BUDGET:-480}
for seed in 1 2; do
  ( SECONDS=0
    timeout $LEFT python3 -m training.train --config training/configs/effnet-lite2-resize224-procaug.json --data /tmp/faces \
        --num-workers 7 --mixed-precision bf16 --seed $seed --output /tmp/m/lite2-s$seed > $OUT/train_s$seed.log 2>&1
    echo "train seed $seed exit $? wall ${SECONDS} s" >> $OUT/env.txt ) &
done
wait
echo "total $(( $(date +%s) - START )) s" >> $OUT/env.txt
