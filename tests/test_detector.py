"""The one inference path: faces, fallbacks, per-image errors, batching and preprocessing modes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from scipy.special import expit, logit

from hub_utils import Detector, load_detector
from hub_utils.detector import default_face_finder
from hub_utils.ensemble import DEFAULT_MODELS_DIR, Ensemble, default_sources
from hub_utils.faces import FaceFinder
from hub_utils.model_folder import ModelFolderError
from hub_utils.preprocess import tile_to_size, window_origins
from tests.conftest import make_model_folder


def test_one_result_per_face_and_whole_image_fallback(model_dir: Path, astronaut: Image.Image) -> None:
    detector = load_detector(model_dir)
    two = Image.new("RGB", (1000, 520), "grey")
    two.paste(astronaut, (0, 0))
    two.paste(astronaut.resize((300, 300)), (650, 100))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    one, pair, none = detector.predict([astronaut, two, noise])
    assert [f.face for f in one.faces] == [0] and one.face_found
    assert [f.face for f in pair.faces] == [0, 1]
    assert pair.fake_probability == max(f.fake_probability for f in pair.faces)
    assert [f.face for f in none.faces] == [None] and not none.face_found
    assert none.faces[0].box == (0, 0, 96, 96)
    for face in one.faces + pair.faces + none.faces:
        assert face.verdict == ("fake" if face.fake_probability >= detector.threshold else "real")


def test_bad_images_are_rows_with_errors_not_exceptions(model_dir: Path, astronaut: Image.Image,
                                                        tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    odd = [np.zeros((10, 10, 3), np.uint8), np.zeros((64, 64, 5), np.uint8), Image.new("La", (64, 64))]
    strip = Image.new("RGB", (20000, 32), "grey")
    results = load_detector(model_dir).predict([corrupt, astronaut, b"text", *odd, strip])
    assert [r.error is None for r in results] == [False, True, False, False, False, False, True]
    assert "corrupt.jpg" in results[0].error and "32 px" in results[3].error
    assert "C of 1 to 4" in results[4].error and "colour mode La" in results[5].error
    assert [(f.face, f.box) for f in results[6].faces] == [(None, (0, 0, 20000, 32))]
    assert results[0].faces == [] and results[0].fake_probability is None


def test_batch_size_does_not_change_scores(model_dir: Path, lfw_faces: list[Image.Image]) -> None:
    detector = load_detector(model_dir)
    one = [r.fake_probability for r in detector.predict(lfw_faces, batch_size=1)]
    many = [r.fake_probability for r in detector.predict(lfw_faces, batch_size=4)]
    np.testing.assert_allclose(one, many, atol=1e-5)
    assert len(set(np.round(one, 6))) > 1


def test_face_crop_switch(model_dir: Path, astronaut: Image.Image) -> None:
    result = load_detector(model_dir).predict([astronaut], face_crop=False)[0]
    assert [f.face for f in result.faces] == [None] and result.faces[0].box == (0, 0, 512, 512)


@pytest.mark.parametrize("mode, windows", [("crop", 1), ("tile", 9)])
def test_native_resolution_modes(tmp_path: Path, mode: str, windows: int) -> None:
    folder = make_model_folder(tmp_path / mode, image_size=64, preprocessing=mode)
    detector = load_detector(folder)
    region = Image.fromarray(np.random.default_rng(1).integers(0, 255, (150, 150, 3), dtype=np.uint8))
    assert detector.preprocess(region).shape == (windows, 3, 64, 64)
    small = Image.new("RGB", (40, 50))
    assert detector.preprocess(small).shape[-2:] == (64, 64)


def test_test_time_flip_scores_an_image_and_its_mirror_alike(tmp_path: Path, lfw_faces: list[Image.Image]) -> None:
    plain = load_detector(make_model_folder(tmp_path / "plain"))
    flipping = load_detector(make_model_folder(tmp_path / "flip", test_time_flip=True))  # same seed: same weights
    mirrors = [ImageOps.mirror(image) for image in lfw_faces]

    def scores(detector, images):
        return np.array([r.fake_probability for r in detector.predict(images, face_crop=False)])

    upright, mirrored = scores(plain, lfw_faces), scores(plain, mirrors)
    assert np.abs(upright - mirrored).max() > 1e-3  # the bare model is not mirror-symmetric
    np.testing.assert_allclose(scores(flipping, lfw_faces), scores(flipping, mirrors), atol=1e-6)
    np.testing.assert_allclose(scores(flipping, lfw_faces), expit((logit(upright) + logit(mirrored)) / 2), atol=1e-6)


def test_views_average_logits_so_a_folded_temperature_stays_exact(tmp_path: Path) -> None:
    from training.calibrate import apply_temperature, fold_temperature  # the training stack, not on every machine

    detector = load_detector(make_model_folder(tmp_path / "tile", preprocessing="tile", test_time_flip=True))
    rng = np.random.default_rng(2)
    regions = [Image.fromarray(rng.integers(0, 255, (150, 130, 3), dtype=np.uint8)) for _ in range(3)]
    fold_temperature(detector.model, 0.02)  # sharpen the random head, so its windows disagree strongly
    before = detector.score_regions(regions)
    fold_temperature(detector.model, 3.0)
    np.testing.assert_allclose(detector.score_regions(regions), apply_temperature(before, 3.0), atol=1e-6)


def test_tiling_helpers() -> None:
    array = np.arange(2 * 3).reshape(2, 3, 1)
    tiled = tile_to_size(array, 5)
    assert tiled.shape == (5, 5, 1) and tiled[2, 0, 0] == array[0, 0, 0] and tiled[0, 3, 0] == array[0, 0, 0]
    assert window_origins(150, 64) == [0, 43, 86] and window_origins(64, 64) == [0]


def test_hub_layout_loads_from_a_path_string(model_dir: Path) -> None:
    detector = load_detector(str(model_dir))
    assert detector.name == model_dir.name and detector.revision == "local"
    assert detector.threshold == json.loads((model_dir / "config.json").read_text())["deepfake"]["threshold"]


def mixed_size_photos(faces_dir: Path) -> list[str]:
    """A real and a fake photo of every source of the shared face data, in source order: many sizes."""
    paths = [str(next(source.glob(f"{label}/**/*.jpg")))
             for source in sorted(p for p in faces_dir.iterdir() if p.is_dir()) for label in ("real", "fake")
             if next(source.glob(f"{label}/**/*.jpg"), None)]
    assert len({Image.open(path).size for path in paths[:8]}) > 2
    return paths


def test_the_batch_path_scores_as_one_image_at_a_time(faces_dir: Path) -> None:
    """Decoding in parallel and finding faces in batches change nothing: on real and fake photos of several sources
    and sizes, a batch gets the faces, P(fake) (within 1e-3) and verdicts of each photo scored alone."""
    paths = mixed_size_photos(faces_dir)
    folder = DEFAULT_MODELS_DIR / "effnet-lite2-resize224-soup"
    batch = load_detector(folder, face_finder=FaceFinder()).predict(paths, batch_size=32)
    alone = [load_detector(folder, face_finder=FaceFinder()).predict([path])[0] for path in paths]
    for together, single in zip(batch, alone):
        assert [face.box for face in together.faces] == [face.box for face in single.faces], together.name
        assert [face.fake_probability for face in together.faces] == pytest.approx(
            [face.fake_probability for face in single.faces], abs=1e-3)
        assert [face.verdict for face in together.faces] == [face.verdict for face in single.faces]


@pytest.mark.slow
def test_chunks_of_mixed_sizes_score_as_one_image_at_a_time_with_every_default_model(
        faces_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's path at scale: chunks of 8 photos of mixed sizes, each decoded while the chunk before is scored (as
    on a machine with cores to spare), faces of one size found in one call; every default model gives each photo the
    faces, P(fake) (within 1e-3) and verdicts of that photo scored alone."""
    monkeypatch.setattr(os, "cpu_count", lambda: torch.get_num_threads() + 1)
    paths = mixed_size_photos(faces_dir)
    try:
        detectors = [load_detector(source) for source in default_sources()]
    except ModelFolderError as error:
        pytest.skip(str(error))  # a frozen backbone that is not cached here

    def on_new_finder() -> Ensemble:
        finder = FaceFinder()
        return Ensemble([Detector(d.model, d.config, d.deepfake, d.name, face_finder=finder) for d in detectors])

    batch = on_new_finder().predict(paths, batch_size=8)
    alone = [on_new_finder().predict([path])[0] for path in paths]
    for together, single in zip(batch, alone):
        assert together.members.keys() == single.members.keys() == {d.name for d in detectors}
        for model, score in together.members.items():
            faces = single.members[model].faces
            assert [face.box for face in score.faces] == [face.box for face in faces], (model, together.ensemble.name)
            assert [face.fake_probability for face in score.faces] == pytest.approx(
                [face.fake_probability for face in faces], abs=1e-3)
            assert [face.verdict for face in score.faces] == [face.verdict for face in faces]


def test_decoding_runs_ahead_on_an_accelerator_or_with_cores_that_torch_leaves_free(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = load_detector(model_dir)
    monkeypatch.setattr(os, "cpu_count", torch.get_num_threads)
    assert not detector.decodes_ahead  # the decoding thread would take a core from the model
    assert load_detector(model_dir, device="meta").decodes_ahead
    monkeypatch.setattr(os, "cpu_count", lambda: torch.get_num_threads() + 1)
    assert detector.decodes_ahead


def test_faces_are_found_by_one_finder_per_device_on_the_models_gpu_else_on_the_cpu(model_dir: Path) -> None:
    first, second = load_detector(model_dir), load_detector(model_dir, device="cpu")
    assert first.face_finder is second.face_finder is default_face_finder("cpu")  # models reuse each other's faces
    assert load_detector(model_dir, device="meta").face_finder is default_face_finder("cpu")  # e.g. Apple's MPS
    assert default_face_finder("meta") is not default_face_finder("cpu")


def test_bf16_is_refused_off_cuda_and_fp32_is_the_bare_model_bit_for_bit(model_dir: Path,
                                                                         lfw_faces: list[Image.Image]) -> None:
    with pytest.raises(ValueError, match=r"'bf16' \(autocast\) is for a model on CUDA, and this model is on cpu"):
        load_detector(model_dir, precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'fp16'"):
        load_detector(model_dir, precision="fp16")
    detector = load_detector(model_dir)
    batch = torch.cat([detector.preprocess(face.convert("RGB")) for face in lfw_faces])
    with torch.inference_mode():
        logits = detector.model(batch)
    assert torch.equal(detector.fake_logits(batch), logits[:, 1] - logits[:, 0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_faces_are_found_there_and_bf16_runs_the_forward_close_to_fp32(astronaut: Image.Image) -> None:
    folder = DEFAULT_MODELS_DIR / "effnet-lite2-resize224-soup"
    on_cpu = load_detector(folder).predict([astronaut])[0]
    fp32, bf16 = load_detector(folder, device="cuda"), load_detector(folder, device="cuda", precision="bf16")
    assert fp32.face_finder.device.type == "cuda" and fp32.face_finder is bf16.face_finder
    dtypes = []
    bf16.model.conv_stem.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    a, b = fp32.predict([astronaut])[0], bf16.predict([astronaut])[0]
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert np.abs(np.subtract([f.box for f in a.faces], [f.box for f in on_cpu.faces])).max() <= 1
    assert a.fake_probability == pytest.approx(on_cpu.fake_probability, abs=1e-2)
    assert b.fake_probability == pytest.approx(a.fake_probability, abs=0.1)
