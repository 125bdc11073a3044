"""Publish a model folder to the Hugging Face Hub (safetensors only), as timm and huggingface_hub do:
stage the exact files in a temporary folder, then `create_repo` + `upload_folder`.

    python -m hub_utils.push models/effnet-lite0-resize192 your-name/deepfake-lite0 [--private] [--revision R]

Pull it back with `load_detector("your-name/deepfake-lite0@R")`, `timm.create_model("hf-hub:...")` or transformers.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import save_file

from .constants import (
    BACKBONE_NAME,
    CARD_NAME,
    CONFIG_NAME,
    EVALUATION_NAME,
    LEAVE_ONE_OUT_NAME,
    SEEN_IMAGES_NAME,
    TRAIN_CONFIG_NAME,
    WEIGHTS_NAME,
)
from .model_folder import ModelFolderError, load_model, read_config

PLOT_SUFFIX = ".png"
EXTRA_FILES = (EVALUATION_NAME, LEAVE_ONE_OUT_NAME, TRAIN_CONFIG_NAME, "training_log.jsonl", SEEN_IMAGES_NAME)


def files_to_push(folder: Path) -> list[Path]:
    """The files a published model holds: config, safetensors weights, card, its plots and records."""
    load_model(folder)  # refuses malformed folders and pickle-only weights before anything is sent
    if not (folder / CARD_NAME).is_file():
        raise ModelFolderError(f"{folder}: no README.md model card; write one with hub_utils.card.write_model_card.")
    names = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, *EXTRA_FILES]
    files = [folder / name for name in names if (folder / name).is_file()]
    return files + sorted(folder.glob(f"*{PLOT_SUFFIX}"))


def stage(folder: Path, destination: Path, with_backbone: bool = False) -> list[str]:
    """Copy the files to push into `destination`; returns their names. `with_backbone` adds a frozen-backbone model's
    backbone weights as `backbone.safetensors` (the weights its kind names but its folder does not hold), so that the
    Hub repo alone is enough to run it."""
    names = []
    for path in files_to_push(folder):
        shutil.copy2(path, destination / path.name)
        names.append(path.name)
    if with_backbone:
        config, deepfake = read_config(folder)
        state = deepfake.model_kind.external_weights(config, deepfake, folder)
        if state is None:
            raise ModelFolderError(f"{folder}: --with-backbone is for frozen-backbone models; this one "
                                   f"({deepfake.kind}) holds all its weights.")
        save_file(state, str(destination / BACKBONE_NAME), metadata={"architecture": config["architecture"]})
        names.append(BACKBONE_NAME)
    return names


def push_folder(folder: Path, repo_id: str, private: bool = False, revision: str | None = None,
                commit_message: str = "Upload deepfake detector", api: HfApi | None = None,
                with_backbone: bool = False) -> str:
    """Create the repo if needed and upload the staged folder; returns the commit URL."""
    api = api or HfApi()
    with tempfile.TemporaryDirectory() as tmp:
        stage(Path(folder), Path(tmp), with_backbone)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(folder_path=tmp, repo_id=repo_id, revision=revision, commit_message=commit_message)
    return str(commit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub_utils.push", description="Publish a model folder to the Hub.")
    parser.add_argument("folder", type=Path, help="the model folder to publish")
    parser.add_argument("repo_id", help="owner/name")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--revision", help="branch to push to (created if missing)")
    parser.add_argument("--with-backbone", action="store_true",
                        help="also upload a frozen-backbone model's backbone weights (backbone.safetensors), so that "
                             "users of the Hub repo need nothing else")
    args = parser.parse_args(argv)
    try:
        print(push_folder(args.folder, args.repo_id, args.private, args.revision, with_backbone=args.with_backbone))
    except ModelFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except HfHubHTTPError as error:
        print(f"error: the Hub refused the upload: {error}. Log in with `hf auth login` (write token).",
              file=sys.stderr)
        return 1
    except (httpx2.TransportError, OSError) as error:  # no network, offline mode (OfflineModeIsEnabled), DNS
        print(f"error: could not reach the Hub ({error}). Check the network and HF_ENDPOINT; unset HF_HUB_OFFLINE "
              "to upload; the folder is unchanged.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
