"""One trainer per kind of model (`hub_utils.kinds.KINDS`): each builds its splits, trains and calibrates, and hands
a `pipeline.Trained` to the one step that writes every trained folder (`pipeline.write_trained_folder`).

A new kind of model trains through a new entry here (and, where it has options of its own, a section of
`training.config.TrainConfig`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hub_utils.kinds import FINE_TUNED, FROZEN_HEAD
from training.config import TrainConfig
from training.frozen_head import train_frozen_head
from training.pipeline import Trained, train_fine_tuned, write_trained_folder

Trainer = Callable[[TrainConfig, bool], Trained | None]  # None: another process of the run writes the folder

TRAINERS: dict[str, Trainer] = {FINE_TUNED.name: train_fine_tuned, FROZEN_HEAD.name: train_frozen_head}


def run(config: TrainConfig, resume: bool = False) -> Path:
    """Train the config's kind of model and write its folder; returns the folder."""
    trained = TRAINERS[config.kind](config, resume)
    return write_trained_folder(config, trained) if trained is not None else Path(config.output)
