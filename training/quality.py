"""Inspect loaded images: hash and decode each one, find the rows training cannot use, and the sources whose real
and fake files share their size and format."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
from PIL import Image

from hub_utils.images import PHOTO_FORMATS
from training.data import raw_image_bytes

MIN_SIDE = 32


@dataclass(frozen=True)
class ImageInfo:
    """What one pass over an image's bytes tells: content hash, perceptual hash and why it is unusable."""

    sha256: str
    dhash: int | None
    problem: str | None


def _dhash(image: Image.Image) -> int:
    """64-bit difference hash: is each of 8x9 grey cells brighter than its left neighbour."""
    cells = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    return int(np.packbits(cells[:, 1:] > cells[:, :-1]).view(">u8")[0])


_INSPECTED: dict[tuple[str, int], ImageInfo] = {}  # (sha256, min_side) -> its info: each file decoded once a process


def inspect_image(data: bytes, min_side: int = MIN_SIDE) -> ImageInfo:
    """Hash `data` and decode it (at reduced JPEG scale) to check it is a usable image; bytes already inspected in
    this process are not decoded again (splitting the data twice, as a bench does per run, decodes it once)."""
    sha = hashlib.sha256(data).hexdigest()
    if (sha, min_side) not in _INSPECTED:
        _INSPECTED[sha, min_side] = _decoded_info(data, sha, min_side)
    return _INSPECTED[sha, min_side]


def _decoded_info(data: bytes, sha: str, min_side: int) -> ImageInfo:
    try:
        with Image.open(io.BytesIO(data), formats=PHOTO_FORMATS) as image:
            width, height = image.size
            image.draft("RGB", (64, 64))
            image.load()
            dhash = _dhash(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return ImageInfo(sha, None, f"undecodable: {error}")
    problem = f"too small: {width}x{height} (short side under {min_side} px)" if min(width, height) < min_side else None
    return ImageInfo(sha, dhash, problem)


def _readable_bytes(image: dict[str, Any]) -> bytes:
    """`raw_image_bytes`, or nothing when the file cannot be read (the scan reports it as undecodable)."""
    try:
        return raw_image_bytes(image)
    except OSError:
        return b""


def inspect_dataset(ds: datasets.Dataset, min_side: int = MIN_SIDE) -> list[ImageInfo]:
    """`inspect_image` for every row, reading raw bytes without decoding through `datasets`."""
    raw = ds.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    return [inspect_image(_readable_bytes(row["image"]), min_side) for row in raw]


def kept_copies(shas: list[str], paths: list[str]) -> list[int]:
    """Per row, the row kept among those with its bytes: the smallest path (then the first row), so that which copy
    stays does not depend on the order the sources were loaded in."""
    kept: dict[str, int] = {}
    for index, (sha, path) in enumerate(zip(shas, paths)):
        if sha not in kept or path < paths[kept[sha]]:
            kept[sha] = index
    return [kept[sha] for sha in shas]


def scan_problems(ds: datasets.Dataset, infos: list[ImageInfo] | None = None) -> list[dict[str, Any]]:
    """Rows that training cannot use (undecodable, too small) or that repeat another row's bytes (every copy but the
    one `kept_copies` keeps), as {index, path, reason}."""
    infos = inspect_dataset(ds) if infos is None else infos
    paths = list(ds["path"])
    kept = kept_copies([info.sha256 for info in infos], paths)
    problems = []
    for index, (info, path) in enumerate(zip(infos, paths)):
        reason = info.problem or (f"duplicate of {paths[kept[index]]}" if kept[index] != index else None)
        if reason:
            problems.append({"index": index, "path": path, "reason": reason})
    return problems


def drop_unusable(ds: datasets.Dataset, problems: list[dict[str, Any]] | None = None) -> datasets.Dataset:
    """`ds` without the rows `scan_problems` reports."""
    problems = scan_problems(ds) if problems is None else problems
    bad = {problem["index"] for problem in problems}
    return ds.select([i for i in range(len(ds)) if i not in bad])


def processing_matched_sources(ds: datasets.Dataset) -> list[str]:
    """Sources holding both labels whose real and fake files share their most common size and format.

    There, file size and format cannot tell the label, so a detector's score on them is free of those shortcuts.
    """
    raw = ds.select_columns(["image", "label", "source"]).cast_column("image", datasets.Image(decode=False))
    kinds: dict[tuple[str, int], Counter] = {}
    for row in raw:
        try:
            with Image.open(io.BytesIO(_readable_bytes(row["image"]))) as image:
                kind = (image.size, image.format)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
        kinds.setdefault((row["source"], row["label"]), Counter())[kind] += 1
    return sorted(source for source, label in kinds if label == 1 and (source, 0) in kinds
                  and kinds[source, 0].most_common(1)[0][0] == kinds[source, 1].most_common(1)[0][0])
