"""Load face images from folder trees, challenge zips or the Hub into one `datasets` schema.

Every loader yields the columns of `FEATURES`; labels are `real` = 0 and `fake` = 1 everywhere. The `group`
column is the near-duplicate key that `training.split.split_dataset` keeps on one side of a split.
"""

from __future__ import annotations

import csv
import hashlib
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import datasets

from hub_utils.constants import LABEL_NAMES
from hub_utils.hub import is_hub_id
from hub_utils.images import IMAGE_SUFFIXES

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(LABEL_NAMES)),
        "generator": datasets.Value("string"),
        "source": datasets.Value("string"),
        "path": datasets.Value("string"),
        "group": datasets.Value("string"),
    }
)
MANIFEST_NAME = "MANIFEST.tsv"
UNKNOWN = "unknown"

_TILE_RE = re.compile(r"^(?P<figure>.+)_r(?P<row>\d+)_c\d+$")
_NOTE_ROW_RE = re.compile(r"SLICE of grid \(row (?P<row>\d+)")
_PAIR_RE = re.compile(r"^(?P<stem>.*)_(?:ori|tar)(?P<index>\d+)$")
_CHALLENGE_ZIP_RE = re.compile(r"^(?P<label>[01])-(?P<generator>.+)\.zip$", re.IGNORECASE)


class DataError(ValueError):
    """A source cannot be loaded or split as asked."""


@dataclass(frozen=True)
class _Entry:
    """One image to load: a file on disk, or a member of a zip archive (`member` set)."""

    file: str
    member: str | None
    label: int
    generator: str
    source: str
    path: str
    group: str


def group_key(source: str, path: str, note: str = "", origin: str = "") -> str:
    """Near-duplicate key: `*_oriN`/`*_tarN` input/edit pairs; tiles cut from one figure (the manifest's
    `source_path`, shared by every tile of that figure: its reals and the edits made from them); without a manifest,
    grid tiles of one figure row (`<figure>_r<row>_c<column>`)."""
    stem = Path(path).stem
    pair = _PAIR_RE.match(stem)
    if pair:
        return f"{source}/{pair['stem']}{pair['index']}"
    if origin:
        return f"{source}/{origin}"
    tile = _TILE_RE.match(stem)
    if tile:
        note_row = _NOTE_ROW_RE.search(note)
        row = int(note_row["row"] if note_row else tile["row"])
        return f"{source}/{tile['figure']}/row{row}"
    return path


def _read_manifest(base: Path) -> dict[str, dict[str, str]]:
    manifest = base / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    with manifest.open(newline="", encoding="utf-8") as handle:
        return {row["relpath"]: row for row in csv.DictReader(handle, delimiter="\t")}


def _label_index(name: str, where: str) -> int:
    if name not in LABEL_NAMES:
        raise DataError(f"Label {name!r} in {where} is not one of {LABEL_NAMES}; fix the label or the folder name.")
    return LABEL_NAMES.index(name)


def _tree_entries(root: Path) -> list[_Entry]:
    """Entries of `root/<real|fake>/<generator?>/...` or `root/<source>/<real|fake>/<generator>/...`."""
    if any((root / label).is_dir() for label in LABEL_NAMES):
        base, tops = root.parent, [root]
    else:
        base = root
        tops = [d for d in sorted(root.iterdir()) if d.is_dir() and any((d / n).is_dir() for n in LABEL_NAMES)]
    manifest = _read_manifest(base)
    entries = []
    for top in tops:
        for label in LABEL_NAMES:
            for file in sorted((top / label).rglob("*")):
                if file.suffix.lower() not in IMAGE_SUFFIXES or not file.is_file():
                    continue
                inner = file.relative_to(top / label).parts
                relpath = file.relative_to(base).as_posix()
                row = manifest.get(relpath, {})
                generator = row.get("generator") or (inner[0] if len(inner) > 1 else UNKNOWN)
                entries.append(
                    _Entry(
                        file=str(file), member=None, label=_label_index(row.get("label", label), relpath),
                        generator=generator, source=top.name, path=relpath,
                        group=group_key(top.name, relpath, row.get("note", ""), row.get("source_path", "")),
                    )
                )
    return entries


def _zip_members(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as handle:
        names = [i.filename for i in handle.infolist() if not i.is_dir()]
    return sorted(n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES and "__MACOSX" not in n)


def _read_test_labels(labels_file: Path, fake_value: int) -> dict[str, int]:
    """`filename label` lines -> {basename: label index}; `fake_value` says which of 0/1 means fake."""
    if fake_value not in (0, 1):
        raise DataError(f"challenge_fake_value must be 0 or 1, got {fake_value!r}.")
    labels = {}
    for number, line in enumerate(labels_file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1"):
            raise DataError(f"{labels_file}:{number}: expected 'filename 0|1', got {line!r}; fix that line.")
        labels[Path(fields[0]).name] = int(int(fields[1]) == fake_value)
    return labels


def _challenge_entries(location: Path, labels_file: str | None, fake_value: int) -> list[_Entry]:
    """Entries of the ICIAP 2022 challenge zips (`0-CelebA.zip`, `1-ATTGAN.zip`, ...) and an optional test zip."""
    archives = [location] if location.is_file() else sorted(location.glob("*.zip"))
    test_labels = _read_test_labels(Path(labels_file), fake_value) if labels_file else None
    entries = []
    for archive in archives:
        named = _CHALLENGE_ZIP_RE.match(archive.name)
        if named is None and test_labels is None:
            continue
        source = "challenge" if named else "challenge_test"
        for member in _zip_members(archive):
            if named:
                label, generator = int(named["label"]), named["generator"]
            elif Path(member).name in test_labels:
                label, generator = test_labels[Path(member).name], UNKNOWN
            else:
                continue
            path = f"{archive.name}/{member}"
            entries.append(_Entry(str(archive), member, label, generator, source, path, f"{source}/{path}"))
    return entries


def _generate_rows(entries: tuple[_Entry, ...]) -> Iterator[dict[str, Any]]:
    archives: dict[str, zipfile.ZipFile] = {}
    try:
        for entry in entries:
            if entry.member is None:
                image = {"path": entry.file, "bytes": None}
            else:
                archive = archives.setdefault(entry.file, zipfile.ZipFile(entry.file))
                image = {"path": entry.member, "bytes": archive.read(entry.member)}
            yield {"image": image, "label": entry.label, "generator": entry.generator, "source": entry.source,
                   "path": entry.path, "group": entry.group}
    finally:
        for archive in archives.values():
            archive.close()


def _fingerprint(entries: list[_Entry]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        stat = Path(entry.file).stat() if entry.member else None
        digest.update(repr((astuple(entry), stat and (stat.st_size, stat.st_mtime_ns))).encode())
    return digest.hexdigest()


def _local_entries(location: Path, labels_file: str | None, fake_value: int) -> list[_Entry]:
    is_challenge = location.suffix.lower() == ".zip" or labels_file is not None or (
        location.is_dir() and any(_CHALLENGE_ZIP_RE.match(z.name) for z in location.glob("*.zip"))
    )
    entries = _challenge_entries(location, labels_file, fake_value) if is_challenge else _tree_entries(location)
    if not entries:
        raise DataError(
            f"No labelled images found in {location}. Expected <real|fake>/<generator>/<file>, "
            "<source>/<real|fake>/<generator>/<file>, challenge zips named 0-NAME.zip / 1-NAME.zip, "
            "or a test zip with challenge_test_labels."
        )
    return entries


def load_source(
    source: str,
    *,
    streaming: bool = False,
    challenge_test_labels: str | None = None,
    challenge_fake_value: int = 1,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load a folder tree, challenge zips or a Hub dataset id (`user/name[@revision]`) with `FEATURES`."""
    location = Path(source)
    if location.exists():
        entries = _local_entries(location, challenge_test_labels, challenge_fake_value)
        kwargs = {"entries": tuple(entries)}
        if streaming:
            return datasets.IterableDataset.from_generator(_generate_rows, features=FEATURES, gen_kwargs=kwargs)
        return datasets.Dataset.from_generator(
            _generate_rows, features=FEATURES, gen_kwargs=kwargs, fingerprint=_fingerprint(entries)
        )
    if is_hub_id(source):
        return _load_hub(source, streaming)
    raise DataError(f"{source!r} is neither an existing folder or zip nor a Hub dataset id (user/name[@revision]).")


def source_name(source: str) -> str:
    """How a model folder names a data source: a Hub dataset id as given, a local folder or zip by its own name
    only (never the path it had on the training machine)."""
    return source if is_hub_id(source) else Path(source).resolve().name


def load_sources(sources: Sequence[str], **kwargs: Any) -> datasets.Dataset:
    """Concatenate `load_source` over several sources."""
    if not sources:
        raise DataError("No data source given; pass at least one folder, zip or Hub dataset id.")
    return datasets.concatenate_datasets([load_source(source, **kwargs) for source in sources])


def _label_converter(feature: Any, source: str) -> Callable[[Any], int]:
    """Map a Hub label (ClassLabel, 0/1 int or 'real'/'fake' string) to our label index."""
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None

    def convert(value: Any) -> int:
        name = names[value] if names is not None else value
        if isinstance(name, str):
            return _label_index(name.strip().lower(), source)
        if name in (0, 1):
            return int(name)
        raise DataError(f"Label {value!r} in {source} is not 0/1 or real/fake; map it before loading.")

    return convert


def _standardize(dataset: datasets.Dataset | datasets.IterableDataset, source: str):
    """Rename and convert a Hub dataset's columns to `FEATURES` without decoding images."""
    features = dataset.features or {}
    image_column = next((n for n, f in features.items() if isinstance(f, datasets.Image)), None)
    label_column = next((n for n in ("label", "labels") if n in features), None)
    if image_column is None or label_column is None:
        raise DataError(f"{source} needs an Image column and a 'label' column; it has {list(features)}.")
    convert = _label_converter(features[label_column], source)
    has_generator = "generator" in features

    def to_row(example: dict[str, Any], index: int) -> dict[str, Any]:
        path = f"{source}/{index}"
        generator = example["generator"] if has_generator else UNKNOWN
        return {"image": example[image_column], "label": convert(example[label_column]),
                "generator": generator or UNKNOWN, "source": source, "path": path, "group": path}

    raw = dataset.cast_column(image_column, datasets.Image(decode=False))
    return raw.map(to_row, with_indices=True, remove_columns=list(features)).cast(FEATURES)


def _load_hub(source: str, streaming: bool) -> datasets.Dataset | datasets.IterableDataset:
    """Load every split of a Hub dataset and concatenate them (splitting is ours to do)."""
    name, _, revision = source.partition("@")
    try:
        loaded = datasets.load_dataset(name, revision=revision or None, streaming=streaming)
    except (OSError, ValueError) as error:
        raise DataError(f"Could not load Hub dataset {source!r} ({error}); check the id and your "
                        "connection.") from error
    parts = (list(loaded.values()) if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict))
             else [loaded])
    return _standardize(datasets.concatenate_datasets(parts), name)


def raw_image_bytes(image: dict[str, Any]) -> bytes:
    """The file bytes of an undecoded `datasets` image cell (`{"bytes", "path"}`): its bytes, else its file's."""
    return image["bytes"] if image.get("bytes") else Path(image["path"]).read_bytes()
