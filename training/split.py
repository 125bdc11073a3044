"""Split loaded images into train, validation and test, near-duplicates kept together, and count what each split
holds (the report of `python -m training.prepare describe`).

An image's split is a function of its near-duplicate component's key and the seed alone: adding or removing other
images never moves it, unless they join its component (docs/training.md, "The split").
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from hub_utils.constants import LABEL_NAMES
from training.data import FEATURES, DataError, load_sources
from training.quality import drop_unusable, inspect_dataset, kept_copies, scan_problems

SPLIT_NAMES = ("train", "validation", "test")
NEAR_DUPLICATE_DISTANCE = 3  # dHash bits; 3 caught every true pair in ../shared/data/faces, 4 added false ones


def _near_duplicate_edges(hashes: list[int | None], distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose dHashes differ in at most `distance` bits."""
    known = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    values = np.array([hashes[i] for i in known], dtype=np.uint64)
    rows, cols = [], []
    chunk = max(1, 2**24 // max(1, len(values)))
    for start in range(0, len(values), chunk):
        block = np.bitwise_count(values[start : start + chunk, None] ^ values[None, :]) <= distance
        i, j = np.nonzero(block)
        i += start
        keep = i < j
        rows.append(known[i[keep]])
        cols.append(known[j[keep]])
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(rows) if rows else empty), (np.concatenate(cols) if cols else empty)


def near_duplicate_components(groups: Sequence[str], hashes: list[int | None], distance: int) -> np.ndarray:
    """Component id per row: rows sharing a `group` key or a near-identical dHash are joined transitively."""
    n = len(groups)
    first: dict[str, int] = {}
    key_rows = np.array([first.setdefault(g, i) for i, g in enumerate(groups)], dtype=np.int64)
    hash_rows, hash_cols = _near_duplicate_edges(hashes, distance)
    rows = np.concatenate([np.arange(n), hash_rows])
    cols = np.concatenate([key_rows, hash_cols])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def component_keys(components: np.ndarray, groups: Sequence[str]) -> list[str]:
    """Per row, its component's key: the smallest `group` key in the component (whatever the rows' order)."""
    smallest: dict[int, str] = {}
    for component, group in zip(components.tolist(), groups):
        if component not in smallest or group < smallest[component]:
            smallest[component] = group
    return [smallest[component] for component in components.tolist()]


def split_position(key: str, seed: int) -> float:
    """A component's place in [0, 1): the first 8 bytes of sha256(`seed:key`), uniform and fixed by the key."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64


def assign_splits(keys: Sequence[str], fractions: Sequence[float], seed: int) -> np.ndarray:
    """Split index per row: the split whose share of [0, 1) (`fractions`, in `SPLIT_NAMES` order) holds the row's
    component position (`split_position`). Stratified only in expectation: each (label, generator) stratum's
    fractions drift from `fractions` by chance (docs/training.md states how far on ../shared/data/faces)."""
    bounds = np.cumsum(fractions) / np.sum(fractions)
    position = {key: split_position(key, seed) for key in set(keys)}
    splits = np.searchsorted(bounds, [position[key] for key in keys], side="right")
    return np.minimum(splits, len(bounds) - 1).astype(np.int64)


def split_dataset(
    ds: datasets.Dataset,
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE,
) -> datasets.DatasetDict:
    """Deduplicated train/validation/test split, near-duplicates kept together, each component's split fixed by its
    key (`assign_splits`).

    Rows with identical bytes keep one (`kept_copies`: the smallest path); rows sharing a `group` key or a dHash
    within `near_duplicate_distance` bits form one component that goes whole to one split, and the returned `group`
    column holds that component's key (`component_keys`). Undecodable rows are kept (use `drop_unusable` first).
    No class balancing.
    """
    if len(fractions) != len(SPLIT_NAMES) or min(fractions) < 0 or sum(fractions) <= 0:
        raise DataError(f"fractions must be three non-negative numbers for {SPLIT_NAMES}, got {fractions!r}.")
    infos = inspect_dataset(ds)
    kept = kept_copies([info.sha256 for info in infos], list(ds["path"]))
    unique = [index for index, keeper in enumerate(kept) if keeper == index]
    ds = ds.select(unique)
    groups = list(ds["group"])
    components = near_duplicate_components(groups, [infos[i].dhash for i in unique], near_duplicate_distance)
    keys = component_keys(components, groups)
    ds = ds.remove_columns("group").add_column("group", keys).cast(FEATURES)
    splits = assign_splits(keys, fractions, seed)
    return datasets.DatasetDict(
        {name: ds.select(np.flatnonzero(splits == index)) for index, name in enumerate(SPLIT_NAMES)}
    )


def split_counts(splits: datasets.DatasetDict) -> dict[str, dict[str, int]]:
    """{split: {"<label name>/<generator>": count}}."""
    return {
        name: dict(sorted(Counter(f"{LABEL_NAMES[label]}/{generator}"
                                  for label, generator in zip(part["label"], part["generator"])).items()))
        for name, part in splits.items()
    }


def describe(sources: Sequence[str], *, split_seed: int = 0, **load_kwargs: Any) -> dict[str, Any]:
    """Load, drop unusable or duplicate rows, split and count: the report of `python -m training.prepare describe`."""
    ds = load_sources(sources, **load_kwargs)
    problems = scan_problems(ds)
    splits = split_dataset(drop_unusable(ds, problems), seed=split_seed)
    skipped = [{"path": p["path"], "reason": p["reason"]} for p in problems]
    return {"sources": list(sources), "split_seed": split_seed, "total": len(ds), "skipped": skipped,
            "splits": split_counts(splits)}


def format_table(report: dict[str, Any]) -> str:
    """Counts per label/generator and split as a text table."""
    keys = sorted({key for counts in report["splits"].values() for key in counts})
    width = max([len(k) for k in keys] + [len("label/generator")])
    lines = [f"{'label/generator':<{width}} " + " ".join(f"{s:>10}" for s in SPLIT_NAMES)]
    for key in keys + ["total"]:
        counts = [sum(c.values()) if key == "total" else c.get(key, 0) for c in report["splits"].values()]
        lines.append(f"{key:<{width}} " + " ".join(f"{c:>10}" for c in counts))
    lines.append(f"{report['total']} rows loaded, {len(report['skipped'])} skipped")
    lines += [f"  skipped {s['path']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines)
