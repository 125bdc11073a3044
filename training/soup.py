"""Average the weights of several runs of one recipe into one model folder (a uniform model soup).

    python -m training.soup --model runs/lite2-s0 --model runs/lite2-s1 --model runs/lite2-s2 --model runs/lite2-s3 \
        --data ../shared/data/faces --output models/effnet-lite2-resize224-soup

The runs must share backbone, input, face crop and split (they differ in `--seed`). Each folder's folded temperature
is taken out first, then every weight is averaged. Averaged BatchNorm statistics do not describe the averaged
weights, so they are estimated afresh on training batches drawn as training draws them
(`torch.optim.swa_utils.update_bn`), and temperature and threshold are fitted on the validation split as
`training.recalibrate` does. The soup costs what one member costs to run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.optim.swa_utils import update_bn

from hub_utils.constants import TRAIN_CONFIG_NAME
from hub_utils.model_folder import DeepfakeConfig, ModelFolderError
from training.config import TrainConfig
from training.data import DataError
from training.pipeline import build_splits, calibration_summary, read_trained_folder, refit, train_loader

# What the members must share: the network, what it sees, and the split it was fitted and calibrated on.
RECIPE_KEYS = ("backbone", "image_size", "preprocessing", "split_seed", "face_margin", "exclude", "holdout")


def check_recipe(folders: list[Path], configs: list[TrainConfig], deepfakes: list[DeepfakeConfig]) -> None:
    """Refuse members that differ in anything but their seed's effects, test-time flip included."""
    for key, settings in [(key, configs) for key in RECIPE_KEYS] + [("test_time_flip", deepfakes)]:
        values = {folder.name: getattr(setting, key) for folder, setting in zip(folders, settings)}
        if len({json.dumps(value) for value in values.values()}) > 1:
            raise ValueError(f"the models differ in {key}: {values}; a soup needs runs of one recipe.")


def average_weights(models: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Uniform mean of every floating-point tensor; integer buffers (BatchNorm's step count) from the first model."""
    states = [model.state_dict() for model in models]
    return {name: torch.stack([state[name].float() for state in states]).mean(0).to(tensor.dtype)
            if tensor.is_floating_point() else tensor
            for name, tensor in states[0].items()}


def soup(folders: list[Path], data: list[str], output: Path, batchnorm_batches: int = 64,
         num_workers: int = 2) -> DeepfakeConfig:
    """Average `folders` into `output`: weights, fresh BatchNorm statistics, then calibration on validation."""
    if len(folders) < 2:
        raise ValueError("a soup needs at least two model folders.")
    members = [read_trained_folder(Path(folder)) for folder in folders]
    models, deepfakes, configs = zip(*members)
    check_recipe(list(folders), list(configs), list(deepfakes))
    model = models[0]
    model.load_state_dict(average_weights(list(models)))

    config = configs[0]
    config.data, config.output, config.num_workers = list(data), str(output), num_workers
    config.test_time_flip = deepfakes[0].test_time_flip  # the folders' own setting, which a recalibration may have set
    splits = build_splits(config)
    if batchnorm_batches:
        torch.manual_seed(config.seed)
        loader = train_loader(config, splits["train"], model.pretrained_cfg,
                              num_samples=batchnorm_batches * config.batch_size)
        update_bn(loader, model)  # it feeds the inputs of each (inputs, labels) batch

    output.mkdir(parents=True, exist_ok=True)
    (output / TRAIN_CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    previous = deepfakes[0]
    previous.training_data = {**previous.training_data, "weight_average": {
        "members": [Path(folder).name for folder in folders], "seeds": [c.seed for c in configs],
        "batchnorm_batches": batchnorm_batches}}
    return refit(model, config, splits["validation"], previous, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="local model folder with train_config.json; repeat for each member (two or more)")
    parser.add_argument("--data", nargs="+", required=True, help="the sources they were trained on")
    parser.add_argument("--output", required=True, help="model folder to write")
    parser.add_argument("--batchnorm-batches", type=int, default=64,
                        help="training batches for the BatchNorm statistics (default 64; 0 averages them)")
    parser.add_argument("--num-workers", type=int, default=2, help="data loader workers (default 2)")
    args = parser.parse_args(argv)
    if len(args.model) < 2:
        parser.error("a soup needs at least two model folders (--model A --model B ...)")
    if args.batchnorm_batches < 0 or args.num_workers < 0:
        parser.error("--batchnorm-batches and --num-workers must not be negative")
    try:
        deepfake = soup([Path(m) for m in args.model], args.data, Path(args.output), args.batchnorm_batches,
                        args.num_workers)
    except (ModelFolderError, DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.output}: average of {len(args.model)} models, {calibration_summary(deepfake)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
