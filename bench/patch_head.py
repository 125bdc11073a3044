"""Patch-level evidence beside the frozen CLIP head (#51): a logistic regression on individual patch tokens, its
patch logits pooled per image, measured by leave-one-out against the recipe's own head on the same images.

    python -m bench.patch_head --config training/configs/clip-vitb16-probe.json --groups modern_fakes new_reals

Every image is neutrally re-encoded and its largest region preprocessed as `Detector.predict` does it; the patch
tokens after `--blocks` are extracted once into one float16 array on disk (about 1.2 MB per image for four blocks).
Per left-out group, with the masks of `bench.leave_one_out` (train split without the group and the recipe's held-out
generators; threshold on the validation split without the group; scored on the left-out images plus the test
split's images of the class they lack, and on the seen test images):

- `head`: the recipe's head (`training.frozen_head.fit_and_calibrate`) from the feature cache;
- `patch`: a logistic regression on `--patches-per-image` random patches of each training image (each patch carries
  its image's label and weight), an image's score the mean of its top `--top` share of patch logits;
- `head+patch`: the two logits combined by a logistic regression fitted on the validation split alone.

Each is calibrated and thresholded on the validation split as training does (`fit_calibration`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from bench.common import GROUP_SETS, every_row, exclusion_rules, figures_at, masks_for, rule_mask
from training.calibrate import fit_calibration
from training.config import TrainConfig
from training.dataset import image_of
from training.features import FeatureCache
from training.frozen_head import CHUNK, Examples, build_detector, fit_and_calibrate, region_tokens, sample_weights
from training.perturb import neutral_reencode

TOKENS = 1 + 14 ** 2  # ViT-B/16 at 224 px: the class token, then the patch tokens


def extract_patch_tokens(config: TrainConfig, rows, blocks: tuple[int, ...], path: Path) -> np.memmap:
    """(N, blocks, tokens, width) float16 tokens (class token first) of each row's largest region after neutral
    re-encoding, after each block (block 11's output is block 12's input, for tuning the last block later),
    computed where the array on disk has no row yet (a `.done` mask beside it makes an interrupted run resume)."""
    detector = build_detector(config)
    backbone = detector.model.backbone
    shape = (len(rows), len(blocks), TOKENS, backbone.embed_dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    done_path = path.with_suffix(".done.npy")
    tokens = np.lib.format.open_memmap(path, mode="r+" if path.is_file() else "w+", dtype=np.float16, shape=shape)
    done = np.load(done_path) if done_path.is_file() else np.zeros(len(rows), bool)
    todo = np.flatnonzero(~done)
    for start in tqdm(range(0, len(todo), 32), desc="patch tokens", file=sys.stderr, disable=not len(todo)):
        chunk = todo[start:start + 32]
        images = [neutral_reencode(image_of(rows[int(i)])) for i in chunk]
        batch = torch.cat([detector.preprocess(detector.regions(image)[0][0]) for image in images])
        with torch.inference_mode():
            out = backbone.forward_intermediates(batch, indices=[b - 1 for b in blocks], norm=False, stop_early=True,
                                                 output_fmt="NLC", intermediates_only=True, return_prefix_tokens=True)
        per_block = [torch.cat([prefix, spatial], dim=1) for spatial, prefix in out]
        tokens[chunk] = torch.stack(per_block, dim=1).half().numpy()
        done[chunk] = True
        if start % 640 == 0 or start + 32 >= len(todo):
            tokens.flush()
            np.save(done_path, done)
    return np.load(path, mmap_mode="r")


def patch_features(tokens: np.ndarray, index: np.ndarray, blocks: list[int],
                   patches: np.ndarray | None = None) -> np.ndarray:
    """(len(index) * P, len(blocks) * width) float32: the chosen patches of the rows `index` (every patch if None),
    the tokens of the stored blocks at positions `blocks` side by side."""
    chosen = np.stack([tokens[int(i)][blocks, 1:] for i in index])  # (n, blocks, patches, width)
    if patches is not None:
        chosen = np.take_along_axis(chosen, patches[:, None, :, None], axis=2)
    chosen = chosen.transpose(0, 2, 1, 3)
    return np.ascontiguousarray(chosen, dtype=np.float32).reshape(-1, chosen.shape[2] * chosen.shape[3])


def fit_patch_head(tokens: np.ndarray, blocks: list[int], train: np.ndarray, labels: np.ndarray,
                   weights: np.ndarray, per_image: int, c: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """Logistic regression (standardization folded in) on `per_image` random patches of each training row."""
    rng = np.random.default_rng(seed)
    patches = np.stack([rng.choice(tokens.shape[2] - 1, per_image, replace=False) for _ in train])
    features = patch_features(tokens, train, blocks, patches)
    targets, sample = np.repeat(labels, per_image), np.repeat(weights, per_image)
    scaler = StandardScaler().fit(features, sample_weight=sample)
    regression = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(features), targets, sample_weight=sample)
    weight = regression.coef_[0] / scaler.scale_
    return weight.astype(np.float32), float(regression.intercept_[0] - weight @ scaler.mean_)


def pooled_patch_logits(tokens: np.ndarray, blocks: list[int], weight: np.ndarray, bias: float,
                        top: float) -> np.ndarray:
    """Per row, the mean of its top `top` share of patch logits."""
    keep = max(1, round(top * (tokens.shape[2] - 1)))
    pooled = np.empty(len(tokens))
    for start in range(0, len(tokens), CHUNK):
        index = np.arange(start, min(len(tokens), start + CHUNK))
        logits = (patch_features(tokens, index, blocks) @ weight + bias).reshape(len(index), -1)
        pooled[index] = np.sort(logits, axis=1)[:, -keep:].mean(axis=1)
    return pooled


def thresholded(scores: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """Calibrated on the validation rows as training calibrates, then a row's figures (`figures_at`)."""
    fitted = fit_calibration(scores[masks["validation"]], labels[masks["validation"]])
    calibrated = expit(logit(np.clip(scores, 1e-7, 1 - 1e-7)) / fitted["temperature"])
    return figures_at(calibrated, labels, masks, fitted["threshold"])


def run_group(name: str, config: TrainConfig, rows, splits: np.ndarray, head_examples: Examples, tokens: np.ndarray,
              args: argparse.Namespace) -> dict:
    """The three scorers' rows for one left-out group."""
    labels = np.asarray(rows["label"])
    left_out = rule_mask(rows, exclusion_rules(name))
    masks = masks_for(splits, labels, left_out, np.zeros(len(labels), bool))
    train = masks["train"] & ~rule_mask(rows, config.holdout)
    fit_rows, validation_rows = np.flatnonzero(train), np.flatnonzero(masks["validation"])
    train_examples, validation_examples = head_examples.subset(train), head_examples.subset(masks["validation"])
    head, fitted, _ = fit_and_calibrate(args.spec, train_examples, validation_examples, config)
    head_scores = head.scores(head_examples.tokens, config.test_time_flip)
    weight, bias = fit_patch_head(tokens, args.patch_block_positions, fit_rows, labels[fit_rows],
                                  sample_weights(train_examples), args.patches_per_image, args.patch_c)
    patch_logits = pooled_patch_logits(tokens, args.patch_block_positions, weight, bias, args.top)
    evidence = np.stack([logit(np.clip(head_scores, 1e-7, 1 - 1e-7)), patch_logits], axis=1)
    combiner = LogisticRegression(C=1.0).fit(evidence[validation_rows], labels[validation_rows])
    scored = {"head": head_scores, "patch": expit(patch_logits), "head+patch": combiner.predict_proba(evidence)[:, 1]}
    result = {"left_out": name, "head_threshold": fitted["threshold"],
              "combiner": [*combiner.coef_[0].tolist(), float(combiner.intercept_[0])]}
    for scorer, scores in scored.items():
        result[scorer] = (figures_at(scores, labels, masks, fitted["threshold"]) if scorer == "head"
                          else thresholded(scores, labels, masks))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the frozen-head recipe")
    parser.add_argument("--groups", nargs="+", required=True, help="left-out group names or sets (bench.common)")
    parser.add_argument("--blocks", default="6,8,10,11,12", help="blocks whose patch tokens are extracted")
    parser.add_argument("--patch-blocks", default="6,8,10,12", help="blocks the patch head reads")
    parser.add_argument("--patches-per-image", type=int, default=16)
    parser.add_argument("--patch-c", type=float, default=0.05)
    parser.add_argument("--top", type=float, default=0.2, help="share of patch logits pooled per image")
    parser.add_argument("--tokens", type=Path, default=Path(".cache/patch_tokens/neutral.npy"))
    parser.add_argument("--output", type=Path, default=Path("reports/experiments/patch_head.json"))
    args = parser.parse_args(argv)
    config = TrainConfig.from_file(args.config)
    rows, splits = every_row(config)
    blocks = tuple(int(b) for b in args.blocks.split(","))
    tokens = extract_patch_tokens(config, rows, blocks, args.tokens)
    args.patch_block_positions = [blocks.index(int(b)) for b in args.patch_blocks.split(",")]
    detector = build_detector(config)
    args.spec = detector.model.spec
    cache = FeatureCache(detector, config.frozen_head.feature_cache)
    labels = np.asarray(rows["label"])
    head_examples = Examples(region_tokens(cache, rows, neutral_reencode, "head features"), labels,
                             np.asarray(rows["generator"]), np.full(len(rows), "neutral"), np.arange(len(rows)))
    names = [g for name in args.groups for g in (GROUP_SETS.get(name) or [name])]
    results = []
    for name in names:
        results.append(run_group(name, config, rows, splits, head_examples, tokens, args))
        print(json.dumps(results[-1]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: str(value) for key, value in vars(args).items() if key not in ("spec", "patch_block_positions")}
    args.output.write_text(json.dumps({"settings": settings, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
