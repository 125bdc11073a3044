"""Safe image loading: every input becomes an RGB PIL image or an `ImageError` with a readable reason."""
from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Image.init()  # registers every plugin, so the filter below keeps only what this Pillow decodes (AVIF: 11.2 and later)
PHOTO_FORMATS = tuple(f for f in ("JPEG", "PNG", "WEBP", "AVIF", "GIF", "BMP", "TIFF") if f in Image.OPEN)  # JPEG: +MPO
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".avif", ".gif", ".bmp", ".tif", ".tiff"}
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 250_000_000  # more is refused as a decompression bomb (phone cameras reach 200 megapixels)
WORKING_PIXELS = 40_000_000  # more is reduced while decoding (JPEG) or right after, never refused
MIN_SIDE = 32
DECODE_WORKERS = min(8, os.cpu_count() or 1)  # threads that decode the images of one batch

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray


class ImageError(ValueError):
    """An input that cannot be scored; the message says why in plain words."""


def _open_bytes(data: bytes, name: str) -> Image.Image:
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: file is {len(data) / 1e6:.0f} MB, the limit is {MAX_FILE_BYTES / 1e6:.0f} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=PHOTO_FORMATS)
            if image.format == "JPEG" and image.width * image.height > WORKING_PIXELS:
                scale = (WORKING_PIXELS / (image.width * image.height)) ** 0.5
                image.draft("RGB", (int(image.width * scale) + 1, int(image.height * scale) + 1))  # DCT scaling
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image has too many pixels (limit {MAX_PIXELS:,}).") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file, or not in a format this detector reads "
                         f"({', '.join(PHOTO_FORMATS)}).") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{name}: the image file is truncated or corrupt ({error}).") from None
    return image


def _read_path(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file.")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{path}: file is {size / 1e6:.0f} MB, the limit is {MAX_FILE_BYTES / 1e6:.0f} MB.")
    return path.read_bytes()


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """First frame, EXIF orientation applied, any mode (16-bit, CMYK, palette, alpha) to 8-bit RGB on white, reduced
    by a whole factor to at most `WORKING_PIXELS`."""
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(f"{name}: image has too many pixels (limit {MAX_PIXELS:,}).")
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        image = background
    try:
        image = image.convert("RGB")
    except ValueError:
        raise ImageError(f"{name}: colour mode {image.mode} cannot be converted to RGB.") from None
    if min(image.size) < MIN_SIDE:
        raise ImageError(f"{name}: image is {image.width}x{image.height}; at least {MIN_SIDE} px on the short side "
                         "is needed.")
    if image.width * image.height > WORKING_PIXELS:
        image = image.reduce(math.ceil((image.width * image.height / WORKING_PIXELS) ** 0.5))
    return image


def load_image(source: ImageInput, name: str | None = None) -> Image.Image:
    """Load a path, bytes, array or PIL image as RGB, enforcing the size, pixel and format limits."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    if isinstance(source, Image.Image):
        return to_rgb(source, name or "image")
    if isinstance(source, np.ndarray):
        if source.ndim == 3 and source.shape[2] == 1:
            source = source[:, :, 0]
        if source.dtype != np.uint8 or not (source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (2, 3, 4))):
            raise ImageError(f"{name or 'array'}: expected an HxW or HxWxC uint8 array with C of 1 to 4, "
                             f"got {source.dtype} {source.shape}.")
        return to_rgb(Image.fromarray(source), name or "array")
    if isinstance(source, bytes):
        return to_rgb(_open_bytes(source, name or "upload"), name or "upload")
    label = name or str(source)
    return to_rgb(_open_bytes(_read_path(source), label), label)


def load_images(sources: Sequence[ImageInput], names: Sequence[str]) -> list[Image.Image | ImageError]:
    """`load_image` for many images, decoded by a thread pool (Pillow decodes outside the GIL); an image that cannot
    be loaded is its `ImageError`, in its place."""
    def load(source: ImageInput, name: str) -> Image.Image | ImageError:
        try:
            return load_image(source, name)
        except ImageError as error:
            return error

    if len(sources) < 2:
        return [load(source, name) for source, name in zip(sources, names)]
    with ThreadPoolExecutor(min(DECODE_WORKERS, len(sources))) as pool:
        return list(pool.map(load, sources, names))


def load_chunks(sources: Sequence[ImageInput], names: Sequence[str], chunk_size: int, *,
                ahead: bool = True) -> Iterator[tuple[Sequence[str], list[Image.Image | ImageError]]]:
    """The names and `load_images` of consecutive chunks of `chunk_size` images. With `ahead`, the next chunk decodes
    in the background while the caller scores this one (decoding overlapped with compute); without it, or for one
    chunk, each chunk is loaded in the caller's thread when asked for."""
    chunks = [(sources[start:start + chunk_size], names[start:start + chunk_size])
              for start in range(0, len(sources), chunk_size)]
    if len(chunks) < 2 or not ahead:
        yield from ((chunk[1], load_images(*chunk)) for chunk in chunks)
        return
    with ThreadPoolExecutor(1) as background:
        upcoming = background.submit(load_images, *chunks[0])
        for previous, chunk in zip(chunks, chunks[1:]):
            current, upcoming = upcoming.result(), background.submit(load_images, *chunk)
            yield previous[1], current
        yield chunks[-1][1], upcoming.result()


def content_hash(image: Image.Image) -> str:
    """sha256 of the decoded RGB pixels and size: identical pictures share a key whatever their file."""
    digest = hashlib.sha256(f"{image.width}x{image.height}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
