"""The training steps shared by `training.train`, `training.soup`, `training.recalibrate` and the benchmarks: the
split, the data loader, validation through `Detector.predict`, calibration, the fine-tuned kind's training loop and the
one step that writes every trained model folder (`write_trained_folder`).

`train_fine_tuned` trains on CPU, one GPU or many (under `accelerate launch`). A checkpoint is written atomically each
epoch; `resume` continues after an interruption, from the checkpoint, with the log cut back to it. Validation scores go
through `Detector.predict`, the same path the app and the CLI use; the final model is calibrated on the validation
split before it is saved. `read_trained_folder` and `refit` reopen a trained folder (its training config, its folded
temperature taken out) and calibrate it afresh. `training.trainers.run` picks the trainer of the config's kind.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from hub_utils.card import write_model_card
from hub_utils.constants import EVALUATION_NAME, LABEL_NAMES, SEEN_IMAGES_NAME, TRAIN_CONFIG_NAME
from hub_utils.detector import Detector
from hub_utils.faces import FaceFinder, FaceSettings
from hub_utils.model_folder import DeepfakeConfig, ModelFolderError, load_model, save_model_folder
from training.augment import build_train_transform
from training.backbone import create_backbone
from training.calibrate import fit_calibration, fold_temperature
from training.config import TrainConfig
from training.data import DataError, load_sources, source_name
from training.dataset import FaceCropDataset, balanced_weights, image_of, seed_worker
from training.deepfake_metrics import compute_metrics
from training.perturb import neutral_reencode
from training.quality import drop_unusable
from training.report import plot_training_curves
from training.split import split_counts, split_dataset

CHECKPOINT_DIR = "checkpoint"
STATE_NAME = "state.pt"
BEST_NAME = "best.safetensors"
LOG_NAME = "training_log.jsonl"


def matches_any(rules: Sequence[str], option: str = "exclude") -> Callable[[dict[str, Any]], bool]:
    """Whether a row matches any `generator=NAME` / `source=NAME` rule (`option` names the flag in errors)."""
    pairs = []
    for rule in rules:
        column, _, value = rule.partition("=")
        if column not in ("generator", "source") or not value:
            raise ValueError(f"--{option} {rule!r}: use generator=NAME or source=NAME.")
        pairs.append((column, value))
    return lambda row: any(row[column] == value for column, value in pairs)


def build_splits(config: TrainConfig) -> datasets.DatasetDict:
    """Usable rows of the sources, split by the loader; `exclude` leaves training and validation, `holdout` training
    only."""
    splits = split_dataset(drop_unusable(load_sources(config.data)), seed=config.split_seed)
    for option, rules, names in (("exclude", config.exclude, ("train", "validation")),
                                 ("holdout", config.holdout, ("train",))):
        if not rules:
            continue
        left_out = matches_any(rules, option)
        for name in names:
            splits[name] = splits[name].filter(lambda row, left_out=left_out: not left_out(row))
    return splits


def check_trainable(splits: datasets.DatasetDict, batch_size: int) -> None:
    """Refuse splits that would train on nothing or fit the threshold on one class, before training or writing
    anything."""
    for name in ("train", "validation"):
        missing = [label for value, label in enumerate(LABEL_NAMES) if value not in set(splits[name]["label"])]
        if missing:
            raise DataError(f"The {name} split holds no {' or '.join(missing)} images ({len(splits[name])} in all); "
                            "add a source with both classes or leave fewer out with --exclude/--holdout.")
    if len(splits["train"]) < batch_size:
        raise DataError(f"The train split holds {len(splits['train'])} images, fewer than one batch of {batch_size}; "
                        "lower --batch-size or add images.")


def write_seen_images(output: Path, splits: datasets.DatasetDict) -> None:
    """Record which images the model trained or was calibrated on (paths relative to their source's root), so that
    evaluations on other splits or grown data can skip them (`training.evaluate --skip-seen`)."""
    record = {"note": "Images this model trained on (train split) and was calibrated on (validation split).",
              "trained": sorted(splits["train"]["path"]), "calibrated": sorted(splits["validation"]["path"])}
    (Path(output) / SEEN_IMAGES_NAME).write_text(json.dumps(record, indent=1) + "\n")


def data_summary(splits: datasets.DatasetDict, config: TrainConfig) -> dict[str, Any]:
    """Counts per split and label/generator, recorded in the model folder and card."""
    return {"sources": [source_name(source) for source in config.data], "excluded": config.exclude,
            "held_out": config.holdout, "splits": split_counts(splits)}


class Validator:
    """Validation images held in memory, raw and neutrally re-encoded, scored through `Detector.predict`."""

    def __init__(self, split: datasets.Dataset, face_finder: FaceFinder) -> None:
        self.labels = np.asarray(split["label"])
        self.generators = list(split["generator"])
        self.raw = [image_of(row) for row in tqdm(split, desc="validation images", file=sys.stderr)]
        self.neutral = [neutral_reencode(image) for image in self.raw]
        self.face_finder = face_finder

    def score(self, model: torch.nn.Module, config: TrainConfig, neutral: bool) -> np.ndarray:
        detector = Detector(model, {"pretrained_cfg": model.pretrained_cfg}, deepfake_config(config), "validation",
                            face_finder=self.face_finder)
        results = detector.predict(self.neutral if neutral else self.raw, batch_size=config.batch_size)
        return np.array([r.fake_probability for r in results])


def deepfake_config(config: TrainConfig, **values: Any) -> DeepfakeConfig:
    return DeepfakeConfig(preprocessing=config.preprocessing, test_time_flip=config.test_time_flip,
                          face_crop=FaceSettings(margin=config.face_margin), **values)


def train_one_epoch(model, loader, optimizer, scheduler, accelerator: Accelerator, config: TrainConfig,
                    epoch: int) -> float:
    """One pass over the balanced sampler; returns the mean loss."""
    model.train()
    losses = []
    steps = len(loader) if not config.max_steps_per_epoch else min(len(loader), config.max_steps_per_epoch)
    progress = tqdm(total=steps, desc=f"epoch {epoch}", file=sys.stderr, disable=not accelerator.is_main_process)
    for step, (inputs, labels) in enumerate(loader):
        if step >= steps:
            break
        if config.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with accelerator.autocast():
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        progress.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        progress.update()
    progress.close()
    return float(np.mean(losses)) if losses else float("nan")


def save_checkpoint(folder: Path, state: dict[str, Any]) -> None:
    """Atomic: write to a temporary file, then rename over the old checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{STATE_NAME}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / STATE_NAME)


def trim_log(path: Path, last_epoch: int) -> None:
    """Keep the log's lines up to the checkpoint's epoch: a kill between writing an epoch's line and its checkpoint
    leaves a line for an epoch the resumed run trains again (and a cut-off line if it came mid-write). Atomic, like
    the checkpoint, so a second kill here cannot cut the log short."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] <= last_epoch:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def save_best(folder: Path, model: torch.nn.Module) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{BEST_NAME}.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, folder / BEST_NAME)


def train_loader(config: TrainConfig, split: datasets.Dataset, data_config: dict[str, Any],
                 num_samples: int | None = None) -> torch.utils.data.DataLoader:
    """Augmented batches drawn label- and generator-balanced; by default as many faces as the split holds."""
    transform = build_train_transform(config.augment, config.image_size, data_config["mean"], data_config["std"],
                                      config.seed)  # workers reseed it from their own seeds
    dataset = FaceCropDataset(split, transform, FaceSettings(margin=config.face_margin), config.face_cache,
                              config.neutral_p)
    sampler = torch.utils.data.WeightedRandomSampler(balanced_weights(dataset.labels, list(split["generator"])),
                                                     num_samples or len(dataset))
    return torch.utils.data.DataLoader(dataset, config.batch_size, sampler=sampler, num_workers=config.num_workers,
                                       worker_init_fn=seed_worker, drop_last=True,
                                       persistent_workers=config.num_workers > 0)


def calibrate(model: torch.nn.Module, validator: Validator, config: TrainConfig) -> DeepfakeConfig:
    """Fit temperature and threshold on neutrally re-encoded validation images; fold the temperature in."""
    fitted = fit_calibration(validator.score(model, config, neutral=True), validator.labels)
    fold_temperature(model, fitted["temperature"])
    return deepfake_config(config, **fitted)


@dataclass
class Trained:
    """A calibrated model from one kind's trainer and what its folder records beside it (`write_trained_folder`)."""

    model: torch.nn.Module  # temperature folded in
    deepfake: DeepfakeConfig  # its kind, calibration and preprocessing; the training data is added when written
    splits: datasets.DatasetDict
    log: list[dict[str, Any]]  # training_log.jsonl: one record per epoch (or per fit)
    training_data: dict[str, Any] = field(default_factory=dict)  # the kind's additions to `data_summary`


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def write_trained_folder(config: TrainConfig, trained: Trained) -> Path:
    """The one step that writes a trained model folder, whatever its kind: config.json and model.safetensors (the
    tensors its kind keeps), the resolved training config, the training log and, where it records a loss per epoch,
    its curves, the images it trained and was calibrated on, and the card; then the checkpoint goes unless kept."""
    output = Path(config.output)
    deepfake = trained.deepfake
    deepfake.training_data = {**data_summary(trained.splits, config), "backbone": config.backbone,
                              "pretrained": config.pretrained, **trained.training_data}
    save_model_folder(trained.model, output, deepfake)
    (output / TRAIN_CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    (output / LOG_NAME).write_text("".join(json.dumps(record) + "\n" for record in trained.log))
    if trained.log and all("train_loss" in record for record in trained.log):
        plot_training_curves(output / LOG_NAME, output / "training_curves.png")
    write_seen_images(output, trained.splits)
    write_model_card(output)
    if (output / CHECKPOINT_DIR).is_dir() and not config.keep_checkpoint:
        shutil.rmtree(output / CHECKPOINT_DIR)
    return output


def train_fine_tuned(config: TrainConfig, resume: bool = False) -> Trained | None:
    """Train a timm model, keep the best epoch by neutral validation balanced accuracy and calibrate it; None in the
    processes of a multi-process run other than the main one (which writes the folder)."""
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    output = Path(config.output)
    checkpoint = output / CHECKPOINT_DIR
    state_path = checkpoint / STATE_NAME
    if state_path.is_file() and not resume:
        raise FileExistsError(f"{output} holds an unfinished run; pass --resume to continue it or choose another "
                              "--output.")
    set_seed(config.seed)  # Python, numpy and torch: augmentation draws repeat with num_workers=0 too
    model = create_backbone(config.backbone, config.pretrained, config.image_size)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    splits = build_splits(config)
    check_trainable(splits, config.batch_size)
    face_finder = FaceFinder(config.face_cache)
    loader = train_loader(config, splits["train"], model.pretrained_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(loader) if not config.max_steps_per_epoch else min(len(loader), config.max_steps_per_epoch)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_epochs * steps_per_epoch),
                                                config.epochs * steps_per_epoch)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    state = {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "stale": 0}
    if resume and state_path.is_file():
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        accelerator.unwrap_model(model).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["progress"]
        accelerator.print(f"resuming after epoch {state['epoch']}")
        if accelerator.is_main_process:
            trim_log(output / LOG_NAME, state["epoch"])
    output.mkdir(parents=True, exist_ok=True)
    validator = Validator(splits["validation"], face_finder)
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["stale"] >= config.patience:
            accelerator.print(f"early stop: no gain for {config.patience} epochs")
            break
        set_seed(config.seed + epoch)
        started = time.time()
        loss = train_one_epoch(model, loader, optimizer, scheduler, accelerator, config, epoch)
        bare = accelerator.unwrap_model(model)
        record = {"epoch": epoch, "train_loss": loss, "lr": scheduler.get_last_lr()[0]}
        for name, neutral in (("raw", False), ("neutral", True)):
            scores = validator.score(bare, config, neutral)
            metrics = compute_metrics(validator.labels, scores, 0.5)
            record.update({f"val_{name}_balanced_accuracy": metrics["balanced_accuracy"],
                           f"val_{name}_roc_auc": metrics["roc_auc"]})
        record["seconds"] = round(time.time() - started, 1)
        if accelerator.is_main_process:
            improved = record["val_neutral_balanced_accuracy"] > state["best_score"]
            if improved:
                save_best(checkpoint, bare)
                state.update(best_score=record["val_neutral_balanced_accuracy"], best_epoch=epoch)
            state.update(epoch=epoch, stale=0 if improved else state["stale"] + 1)
            with open(output / LOG_NAME, "a") as log:
                log.write(json.dumps(record) + "\n")
            save_checkpoint(checkpoint, {"model": bare.state_dict(), "optimizer": optimizer.state_dict(),
                                         "scheduler": scheduler.state_dict(), "progress": state})
            accelerator.print(json.dumps(record))
    if not accelerator.is_main_process:
        return None
    return best_calibrated(accelerator.unwrap_model(model), splits, validator, config)


def best_calibrated(model: torch.nn.Module, splits: datasets.DatasetDict, validator: Validator,
                    config: TrainConfig) -> Trained:
    """The best epoch's weights, calibrated on validation, with the run's log."""
    output = Path(config.output)
    model.load_state_dict(load_file(output / CHECKPOINT_DIR / BEST_NAME))
    model.eval()
    deepfake = calibrate(model, validator, config)
    return Trained(model.to(memory_format=torch.contiguous_format), deepfake, splits, read_log(output / LOG_NAME),
                   {"image_size": config.image_size})


def read_trained_folder(folder: Path) -> tuple[torch.nn.Module, DeepfakeConfig, TrainConfig]:
    """A trained folder's model with its folded temperature taken out, its deepfake section and its training config."""
    model, _, deepfake = load_model(folder)
    config_path = folder / TRAIN_CONFIG_NAME
    if not config_path.is_file():
        raise ModelFolderError(f"{folder}: no {TRAIN_CONFIG_NAME}, so its split and recipe cannot be rebuilt.")
    fold_temperature(model, 1.0 / deepfake.temperature)
    return model, deepfake, TrainConfig.from_file(config_path)


def refit(model: torch.nn.Module, config: TrainConfig, validation: datasets.Dataset, previous: DeepfakeConfig,
          folder: Path) -> DeepfakeConfig:
    """Fit temperature and threshold of a model with no folded temperature on the `validation` split, then write it
    to `folder` with `previous`'s face crop and training data, and its card."""
    validator = Validator(validation, FaceFinder(config.face_cache))
    deepfake = calibrate(model, validator, config)
    deepfake.face_crop, deepfake.training_data = previous.face_crop, previous.training_data
    save_model_folder(model, folder, deepfake)
    (folder / EVALUATION_NAME).unlink(missing_ok=True)
    write_model_card(folder)
    return deepfake


def calibration_summary(deepfake: DeepfakeConfig) -> str:
    metrics = deepfake.metrics["validation_neutral"]
    return (f"temperature {deepfake.temperature:.4f}, threshold {deepfake.threshold:.4f}, validation balanced accuracy "
            f"{metrics['balanced_accuracy']:.4f}, AUC {metrics['roc_auc']:.4f}")
