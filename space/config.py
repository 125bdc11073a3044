"""The Space's settings: which models it offers and its limits.

Defaults live in `SpaceConfig`; `space/models.json` (or the JSON file that `DEEPFAKE_SETTINGS` names) may set any of
them (relative folders in it are taken from the repository root); the environment variable `DEEPFAKE_MODELS="a,b"`
overrides the models. With neither, the
models are the embedded defaults that `models/defaults.json` names (`hub_utils.ensemble.default_sources`), led by
the one it names as headline; with `DEEPFAKE_MODELS`, the first model named leads unless the settings file names a
`headline`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from hub_utils.detector import INCONCLUSIVE_MARGIN
from hub_utils.ensemble import default_headline, default_sources
from hub_utils.images import MAX_FILE_BYTES

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = Path(__file__).resolve().parent / "models.json"
MODELS_ENV = "DEEPFAKE_MODELS"
SETTINGS_ENV = "DEEPFAKE_SETTINGS"


class SpaceConfigError(ValueError):
    """A settings file or variable that cannot be used; the message says which and why."""


@dataclass
class SpaceConfig:
    """Models (local folders or Hub ids `owner/name@rev`) and the limits the app enforces."""

    models: list[str] = field(default_factory=default_sources)
    # a model's name or "ensemble"; "" or unknown: the first model
    headline: str = field(default_factory=default_headline)
    max_batch_files: int = 200
    max_upload_bytes: int = 2 * MAX_FILE_BYTES  # per uploaded file; a zip may hold several images
    max_batch_bytes: int = 5 * MAX_FILE_BYTES  # all images of one batch together
    queue_size: int = 32
    concurrency: int = 2
    inconclusive_margin: float = INCONCLUSIVE_MARGIN
    explained_regions: int = 4  # faces per model that get Grad-CAM and spectrum pictures
    temp_file_seconds: int = 600  # uploads never sent to Detect, and CSV downloads, are deleted after this long


def _resolve_source(source: str) -> str:
    """A relative path that exists under the repository root becomes that folder; anything else stays as given
    (an absolute folder, or a Hub id `owner/name@rev`)."""
    in_repo = REPO_ROOT / source
    return str(in_repo) if not Path(source).is_absolute() and in_repo.exists() else source


def read_config_file(path: Path) -> dict:
    """The settings in a JSON file, checked against `SpaceConfig`'s fields."""
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SpaceConfigError(f"{path}: cannot read the settings ({error}).") from None
    if not isinstance(values, dict):
        raise SpaceConfigError(f"{path}: expected a JSON object such as {{\"models\": [\"owner/name@rev\"]}}.")
    unknown = sorted(set(values) - {f.name for f in fields(SpaceConfig)})
    if unknown:
        raise SpaceConfigError(f"{path}: unknown settings {', '.join(unknown)}; known: "
                               f"{', '.join(f.name for f in fields(SpaceConfig))}.")
    if "models" in values and not (isinstance(values["models"], list)
                                   and all(isinstance(m, str) for m in values["models"])):
        raise SpaceConfigError(f"{path}: 'models' must be a list of folder paths or Hub ids.")
    return values


def load_space_config(path: Path | None = None, environ: Mapping[str, str] = os.environ) -> SpaceConfig:
    """Defaults, then the settings file (`path`, `DEEPFAKE_SETTINGS` or space/models.json) if it exists, then
    `DEEPFAKE_MODELS`."""
    if path is None and environ.get(SETTINGS_ENV):
        path = Path(environ[SETTINGS_ENV])
        if not path.is_file():
            raise SpaceConfigError(f"{SETTINGS_ENV}={path}: no such settings file.")
    path = path or CONFIG_FILE
    values = read_config_file(path) if path.is_file() else {}
    if environ.get(MODELS_ENV, "").strip():
        values["models"] = [m.strip() for m in environ[MODELS_ENV].split(",") if m.strip()]
        values.setdefault("headline", "")  # the first of the models named
    if "models" in values:
        values["models"] = [_resolve_source(m) for m in values["models"]]
    return SpaceConfig(**values)
