"""Resolve a model source to a local folder: a path, or a Hub id with an optional `@revision`.

Hub ids download only the files a detector needs, through huggingface_hub's public API; with HF_ENDPOINT set,
any Hub-compatible server works the same way.
"""
from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .constants import BACKBONE_NAME, CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from .model_folder import ModelFolderError

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
NEEDED_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, BACKBONE_NAME]  # the backbone: only in repos pushed with it


def split_revision(source: str) -> tuple[str, str | None]:
    """`owner/name@rev` -> (`owner/name`, `rev`)."""
    name, _, revision = source.partition("@")
    return name, revision or None


def is_hub_id(source: str) -> bool:
    """True for `owner/name[@rev]` that is not an existing local path."""
    return not Path(source).exists() and bool(REPO_ID.match(split_revision(source)[0]))


def resolve_model_source(source: str | Path) -> tuple[Path, str]:
    """Local folder and revision label ("local" for folders, the commit hash for Hub downloads)."""
    text = str(source)
    if not is_hub_id(text):
        return Path(text), "local"
    repo_id, revision = split_revision(text)
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=NEEDED_FILES))
    except LocalEntryNotFoundError:
        raise ModelFolderError(
            f"{text}: not in the local Hugging Face cache and the Hub cannot be reached (offline?). "
            "Connect, or pass a local model folder instead.") from None
    except RevisionNotFoundError:
        raise ModelFolderError(f"{text}: the Hub repo has no revision {revision!r}.") from None
    except GatedRepoError:
        raise ModelFolderError(f"{text}: the Hub repo is gated; log in with `hf auth login` after accepting its "
                               "terms.") from None
    except RepositoryNotFoundError:
        raise ModelFolderError(f"{text}: no such model repo on the Hub (or it is private: log in with "
                               "`hf auth login`).") from None
    except HfHubHTTPError as error:
        raise ModelFolderError(f"{text}: the Hub answered with an error: {error}") from None
    return folder, folder.name
