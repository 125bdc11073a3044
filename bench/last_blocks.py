"""Partial tuning of the frozen CLIP head's last two blocks on this CPU (#51): a low-rank residual on the linear
layers of blocks 11 and 12 and the head, trained from cached block-11 inputs, measured by leave-one-out against the
untuned head.

    python -m bench.last_blocks --config training/configs/clip-vitb16-probe.json --groups diffusion_era

Reads the tokens extracted at commit 2614d68 (`bench.patch_head`: neutral re-encoding, largest region, as-is view;
blocks 6, 8, 10, 11, 12 in `.cache/patch_tokens/neutral.npy`). The head reads the class and mean patch tokens of
blocks 6, 8 and 10 (frozen) and of block 12, recomputed by blocks 11 and 12 from block 10's cached output. Per
left-out group, on `bench.leave_one_out`'s masks:

- `head (as is)`: the logistic regression on the untuned features, as `training.frozen_head` fits it but on the
  as-is view alone (the reference, since the tokens have no mirror image);
- `tuned`: blocks 11 and 12 with a rank `--rank` residual (B A, B zero at the start) on qkv, proj, fc1 and fc2, and
  the head started from the reference, trained `--epochs` epochs with AdamW on the weighted logistic loss
  (`training.frozen_head.sample_weights`), then calibrated and thresholded on validation as training does.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit, logit
from tqdm.auto import tqdm

from bench.common import GROUP_SETS, every_row, exclusion_rules, figures_at, masks_for, rule_mask
from training.calibrate import fit_calibration
from training.config import TrainConfig
from training.frozen_head import Examples, build_detector, fit_features, sample_weights

FROZEN_POSITIONS = (0, 1, 2)  # blocks 6, 8, 10 in the extracted array
INPUT_POSITION, OUTPUT_POSITION = 2, 4  # block 10 (block 11's input) and block 12
TUNED_BLOCKS = (11, 12)


class LowRank(torch.nn.Module):
    """A frozen linear layer plus a trainable residual B A of rank `rank` (B starts at zero)."""

    def __init__(self, linear: torch.nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.linear = linear.requires_grad_(False)
        self.a = torch.nn.Parameter(torch.randn(rank, linear.in_features) / linear.in_features ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(linear.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + (x @ self.a.T @ self.b.T) * self.scale


def with_low_rank(block: torch.nn.Module, rank: int) -> torch.nn.Module:
    """A copy of a timm ViT block whose qkv, proj, fc1 and fc2 carry a low-rank residual; the rest frozen."""
    block = copy.deepcopy(block).requires_grad_(False)
    block.attn.qkv = LowRank(block.attn.qkv, rank, 2.0 * rank)
    block.attn.proj = LowRank(block.attn.proj, rank, 2.0 * rank)
    block.mlp.fc1 = LowRank(block.mlp.fc1, rank, 2.0 * rank)
    block.mlp.fc2 = LowRank(block.mlp.fc2, rank, 2.0 * rank)
    return block


def summary_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 2 * width): the class token and the mean patch token."""
    return torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=1)


def frozen_features(tokens: np.ndarray) -> np.ndarray:
    """(N, 8 * width) float32: class and mean patch tokens of blocks 6, 8, 10 and (untuned) 12, per row."""
    out = np.empty((len(tokens), 2 * len(FROZEN_POSITIONS + (OUTPUT_POSITION,)) * tokens.shape[-1]), np.float32)
    for i in tqdm(range(len(tokens)), desc="frozen features", file=sys.stderr):
        row = torch.from_numpy(np.asarray(tokens[i][list(FROZEN_POSITIONS + (OUTPUT_POSITION,))], np.float32))
        out[i] = summary_tokens(row).reshape(-1).numpy()
    return out


def block_inputs(tokens: np.ndarray, index: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(tokens[int(i)][INPUT_POSITION], np.float32) for i in index]))


def thresholded(scores: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """Calibrated on the validation rows as training calibrates, then a row's figures (`figures_at`)."""
    fitted = fit_calibration(scores[masks["validation"]], labels[masks["validation"]])
    calibrated = expit(logit(np.clip(scores, 1e-7, 1 - 1e-7)) / fitted["temperature"])
    return figures_at(calibrated, labels, masks, fitted["threshold"])


class TunedHead(torch.nn.Module):
    """Frozen features of blocks 6, 8, 10 beside block 12 recomputed by the tuned blocks, into a linear head."""

    def __init__(self, blocks: list[torch.nn.Module], rank: int, weight: np.ndarray, bias: float, width: int) -> None:
        super().__init__()
        self.block = torch.nn.Sequential(*(with_low_rank(block, rank) for block in blocks))
        self.frozen_width = 6 * width
        self.head = torch.nn.Linear(len(weight), 1)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(weight).float()[None])
            self.head.bias.fill_(bias)

    def forward(self, frozen: torch.Tensor, block_input: torch.Tensor) -> torch.Tensor:
        tuned = summary_tokens(self.block(block_input))
        return self.head(torch.cat([frozen[:, :self.frozen_width], tuned], dim=1))[:, 0]


def train_tuned(model: TunedHead, tokens: np.ndarray, frozen: np.ndarray, rows: np.ndarray, labels: np.ndarray,
                weights: np.ndarray, args: argparse.Namespace) -> None:
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(0)
    model.train()
    for epoch in range(args.epochs):
        order = rng.permutation(len(rows))
        progress = tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch + 1}", file=sys.stderr)
        for start in progress:
            batch = order[start:start + args.batch_size]
            logits = model(torch.from_numpy(frozen[rows[batch]]), block_inputs(tokens, rows[batch]))
            target = torch.from_numpy(labels[batch].astype(np.float32))
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
                    * torch.from_numpy(weights[batch].astype(np.float32))).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            progress.set_postfix(loss=float(loss))


@torch.inference_mode()
def tuned_scores(model: TunedHead, tokens: np.ndarray, frozen: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    model.eval()
    scores = np.empty(len(tokens))
    for start in tqdm(range(0, len(tokens), 128), desc="scoring", file=sys.stderr):
        index = np.arange(start, min(len(tokens), start + 128))
        scores[index] = expit(model(torch.from_numpy(frozen[index]), block_inputs(tokens, index)).numpy())
    return scores


def run_group(name: str, config: TrainConfig, rows, splits: np.ndarray, tokens: np.ndarray, frozen: np.ndarray,
              blocks: list[torch.nn.Module], args: argparse.Namespace) -> dict:
    labels = np.asarray(rows["label"])
    left_out = rule_mask(rows, exclusion_rules(name))
    masks = masks_for(splits, labels, left_out, np.zeros(len(labels), bool))
    train = masks["train"] & ~rule_mask(rows, config.holdout)
    fit_rows = np.flatnonzero(train)
    examples = Examples([np.zeros(1)] * len(rows), labels, np.asarray(rows["generator"]),
                        np.full(len(rows), "neutral"), np.arange(len(rows))).subset(train)
    weights = sample_weights(examples)
    reference, _ = fit_features(None, frozen[fit_rows], labels[fit_rows], weights, config.frozen_head.probe_c)
    result = {"left_out": name, "head (as is)": thresholded(expit(frozen @ reference.weight + reference.bias),
                                                            labels, masks)}
    started = time.time()
    model = TunedHead(blocks, args.rank, reference.weight, reference.bias, tokens.shape[-1])
    train_tuned(model, tokens, frozen, fit_rows, labels[fit_rows], weights, args)
    result["tuned"] = thresholded(tuned_scores(model, tokens, frozen, args), labels, masks)
    result["seconds"] = round(time.time() - started)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the frozen-head recipe")
    parser.add_argument("--groups", nargs="+", required=True, help="left-out group names or sets (bench.common)")
    parser.add_argument("--tokens", type=Path, default=Path(".cache/patch_tokens/neutral.npy"))
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--output", type=Path, default=Path("reports/experiments/last_blocks.json"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = TrainConfig.from_file(args.config)
    rows, splits = every_row(config)
    tokens = np.load(args.tokens, mmap_mode="r")
    frozen = frozen_features(tokens)
    blocks = [build_detector(config).model.backbone.blocks[b - 1] for b in TUNED_BLOCKS]
    results = []
    names = [g for name in args.groups for g in (GROUP_SETS.get(name) or [name])]
    for name in names:
        results.append(run_group(name, config, rows, splits, tokens, frozen, blocks, args))
        print(json.dumps(results[-1]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: str(value) for key, value in vars(args).items()}
    args.output.write_text(json.dumps({"settings": settings, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
