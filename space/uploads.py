"""Uploaded files: read once, then deleted from Gradio's upload folder; zips expanded in memory within limits."""
from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gradio.utils import get_upload_folder

from hub_utils.images import MAX_FILE_BYTES


class UploadError(ValueError):
    """An upload that cannot be used; the message says why in plain words."""


@dataclass(frozen=True)
class NamedImage:
    """The bytes of one uploaded picture (or zip member) and the name it is reported under."""

    name: str
    data: bytes


def discard_upload(path: Path) -> None:
    """Delete a file Gradio saved for this request, and its folder once empty; files elsewhere (examples) stay."""
    upload_folder = Path(get_upload_folder()).resolve()
    path = path.resolve()
    if upload_folder not in path.parents:
        return
    path.unlink(missing_ok=True)
    if path.parent != upload_folder:
        with contextlib.suppress(OSError):  # not empty: another upload of the same content is waiting there
            path.parent.rmdir()


def take_upload(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of an uploaded file, which is deleted as soon as it has been read (or found too large)."""
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            raise UploadError(f"{path.name} is {path.stat().st_size / 2**20:.0f} MB; "
                              f"the limit is {max_bytes // 2**20} MB.")
        return path.read_bytes()
    except FileNotFoundError:
        raise UploadError(f"{path.name} is no longer on the server (each upload is deleted after it is read); "
                          "upload it again.") from None
    finally:
        discard_upload(path)


def _zip_members(data: bytes, archive: str, room: int) -> list[NamedImage]:
    """The files in a zip (folders and hidden files skipped), refusing more than `room` or oversized members."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            infos = [i for i in bundle.infolist() if not i.is_dir() and not Path(i.filename).name.startswith(".")
                     and "__MACOSX" not in i.filename]
            if len(infos) > room:
                raise UploadError(f"{archive} holds {len(infos)} files; at most {room} more fit in this batch.")
            too_big = [i.filename for i in infos if i.file_size > MAX_FILE_BYTES]
            if too_big:
                raise UploadError(f"{archive}: {too_big[0]} is over {MAX_FILE_BYTES // 2**20} MB uncompressed.")
            return [NamedImage(f"{archive}/{i.filename}", bundle.read(i)) for i in infos]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as error:
        raise UploadError(f"{archive} is not a readable zip archive ({error}).") from None


def take_batch(paths: Iterable[str | Path], max_files: int, max_file_bytes: int,
               max_total_bytes: int) -> list[NamedImage]:
    """Images from uploaded files and zips (all deleted after reading): at most `max_files` and `max_total_bytes`."""
    paths = [Path(p) for p in paths]
    images: list[NamedImage] = []
    try:
        for path in paths:
            data = take_upload(path, max_file_bytes)
            if path.suffix.lower() == ".zip":
                images.extend(_zip_members(data, path.name, max_files - len(images)))
            else:
                images.append(NamedImage(path.name, data))
            if len(images) > max_files:
                raise UploadError(f"{len(paths)} files were uploaded; a batch holds at most {max_files} images.")
            if sum(len(image.data) for image in images) > max_total_bytes:
                raise UploadError(f"The batch is over {max_total_bytes // 2**20} MB; split it into smaller ones.")
    finally:
        for path in paths:
            discard_upload(path)
    if not images:
        raise UploadError("No files were uploaded; choose some images or a zip of images.")
    return images
