"""Safe loading: every odd input becomes RGB or a readable ImageError."""
from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from hub_utils import images
from hub_utils.images import ImageError, content_hash, load_image


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    grey = np.asarray(base.convert("L"))
    numeric = {"I;16": (grey.astype(np.uint16) * 257), "I": grey.astype(np.int32), "F": grey.astype(np.float32) / 255}
    image = Image.fromarray(numeric[mode]) if mode in numeric else base.convert(mode)
    assert image.mode == mode
    rgb = load_image(image)
    assert rgb.mode == "RGB" and rgb.size == (50, 40)


def test_sixteen_bit_png_keeps_its_range(tmp_path: Path) -> None:
    array = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    rgb = np.asarray(load_image(path))
    assert rgb.min() <= 1 and rgb.max() >= 254


def test_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    assert np.asarray(load_image(rgba)).min() == 255


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (60, 40), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = encoded(image, "JPEG", exif=exif.tobytes())
    assert load_image(data).size == (40, 60)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (48, 48), c) for c in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert load_image(buffer.getvalue()).getpixel((10, 10))[0] > 200


@pytest.mark.parametrize("data, reason", [
    (b"this is text, not an image", "not an image"),
    (encoded(Image.new("RGB", (200, 200), "white"), "PNG")[:120], "truncated or corrupt"),
    (encoded(Image.new("RGB", (20, 64)), "PNG"), "at least 32 px"),
])
def test_bad_bytes_get_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        load_image(data, "upload.png")


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n"


@pytest.mark.parametrize("data", [EPS, encoded(Image.new("RGB", (64, 64)), "PPM"),
                                  encoded(Image.new("RGB", (64, 64)), "TGA")])
def test_formats_photos_do_not_come_in_are_not_decoded(data: bytes) -> None:
    with pytest.raises(ImageError, match=r"not in a format this detector reads \(JPEG, PNG, WEBP, AVIF"):
        load_image(data, "upload")


def test_photo_formats_are_decoders_this_pillow_has() -> None:
    assert {"JPEG", "PNG", "GIF", "BMP", "TIFF"} <= set(images.PHOTO_FORMATS) <= set(Image.OPEN)


@pytest.mark.parametrize("fmt", ["JPEG", "MPO", "PNG", "WEBP", "AVIF", "GIF", "BMP", "TIFF"])
def test_every_photo_format_is_read(fmt: str) -> None:
    if fmt in ("WEBP", "AVIF") and not features.check(fmt.lower()):
        pytest.skip(f"this Pillow was built without {fmt}")
    image = Image.fromarray(np.random.default_rng(4).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    assert load_image(encoded(image, fmt), f"face.{fmt.lower()}").size == (50, 40)


def test_truncated_jpeg_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    full = encoded(Image.fromarray(np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8)), "JPEG")
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        load_image(path)


@pytest.mark.parametrize("shape", [(40, 50), (40, 50, 1), (40, 50, 2), (40, 50, 3), (40, 50, 4)])
def test_uint8_arrays_of_one_to_four_channels_become_rgb(shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(3).integers(0, 255, shape, dtype=np.uint8)
    rgb = load_image(array)
    assert rgb.mode == "RGB" and rgb.size == (50, 40)
    if len(shape) == 2 or shape[2] == 1:
        assert np.array_equal(np.asarray(rgb)[:, :, 0], array.reshape(40, 50))


@pytest.mark.parametrize("array", [np.zeros((40, 50, 5), np.uint8), np.zeros((40, 50, 3), np.float32),
                                   np.zeros((2, 40, 50, 3), np.uint8)])
def test_other_arrays_get_a_clear_error(array: np.ndarray) -> None:
    with pytest.raises(ImageError, match=r"uint8 array with C of 1 to 4, got"):
        load_image(array, "frame")


def test_a_mode_without_an_rgb_conversion_gets_a_clear_error() -> None:
    with pytest.raises(ImageError, match="colour mode La cannot be converted"):
        load_image(Image.new("La", (64, 64)))


def test_missing_file() -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image("does/not/exist.jpg")


def test_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(encoded(Image.new("RGB", (400, 400)), "PNG"))


def test_phone_sized_photos_are_decoded_reduced_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64-megapixel JPEG is decoded at half size by DCT scaling; any other format over the working size is reduced
    by a whole factor after decoding; the aspect ratio stays."""
    photo = Image.new("RGB", (8000, 8000), (200, 150, 120))
    photo.paste((20, 30, 40), (0, 0, 4000, 8000))
    loaded = load_image(encoded(photo, "JPEG"))
    assert loaded.size == (4000, 4000) and loaded.width * loaded.height <= images.WORKING_PIXELS
    assert loaded.getpixel((1000, 2000))[0] < 60 and loaded.getpixel((3000, 2000))[0] > 180
    monkeypatch.setattr(images, "WORKING_PIXELS", 100 * 100)
    assert load_image(encoded(Image.new("RGB", (300, 150)), "PNG")).size == (100, 50)


def test_huge_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.bmp"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(ImageError, match="limit"):
        load_image(path)


def test_content_hash_ignores_container() -> None:
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    assert content_hash(load_image(encoded(image, "PNG"))) == content_hash(load_image(encoded(image, "BMP")))
    assert content_hash(image) != content_hash(image.transpose(Image.FLIP_LEFT_RIGHT))


def test_chunks_keep_order_and_errors_and_the_next_one_decodes_while_this_one_is_scored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, threading.Event] = {}  # first name of a chunk -> set once its decoding began
    threads: list[threading.Thread] = []
    load_images = images.load_images

    def recording(sources, names):
        threads.append(threading.current_thread())
        started.setdefault(names[0], threading.Event()).set()
        return load_images(sources, names)

    monkeypatch.setattr(images, "load_images", recording)
    pictures = [encoded(Image.new("RGB", (40, 40), (50 * i, 0, 0)), "PNG") for i in range(5)]
    pictures[3] = b"not a picture"
    names = [f"p{i}" for i in range(5)]
    chunks = images.load_chunks(pictures, names, 2)
    first_names, first = next(chunks)
    assert started.setdefault("p2", threading.Event()).wait(10)  # decoding ahead, before the caller asks for it
    rest_names, rest = zip(*chunks)
    assert [list(first_names), *map(list, rest_names)] == [["p0", "p1"], ["p2", "p3"], ["p4"]]
    assert [len(first), *map(len, rest)] == [2, 2, 1]
    loaded = first + [item for chunk in rest for item in chunk]
    assert [image.getpixel((0, 0))[0] for i, image in enumerate(loaded) if i != 3] == [0, 50, 100, 200]
    assert isinstance(loaded[3], ImageError) and "p3" in str(loaded[3])
    assert all(thread is not threading.main_thread() for thread in threads)
    threads.clear()
    assert len(next(images.load_chunks(pictures[:1], names[:1], 2))[1]) == 1
    assert threads == [threading.main_thread()]  # one chunk (the app's single photo): no thread, as before
    threads.clear()
    behind = images.load_chunks(pictures, names, 2, ahead=False)
    assert list(next(behind)[0]) == ["p0", "p1"] and len(threads) == 1  # nothing decodes before it is asked for
    assert [len(chunk) for _, chunk in behind] == [2, 1]
    assert threads == [threading.main_thread()] * 3
