"""The frozen-feature probe bench: features through the one inference path, cached, and a probe that never sees
the family it is tested on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench.feature_probe as feature_probe
from bench.common import detector_scores, every_row, feature_probe_table, masks_for, save_rows
from bench.feature_probe import (
    build_parser,
    cached_features,
    fused,
    parse_fuse,
    pooled_statistics,
    probe_key,
    probe_scores,
    scored_row,
)
from tests.conftest import make_model_folder
from training.config import TrainConfig


def test_pooled_statistics_are_channel_means_then_standard_deviations() -> None:
    features = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    pooled = pooled_statistics(features)
    assert pooled.shape == (2, 6)
    assert torch.allclose(pooled[1, 2], features[1, 2].mean()) and torch.allclose(pooled[0, 4], features[0, 1].std())


def synthetic_rows(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, splits, kinds): reals and fakes of families `a`, `b`, `c`, each with its own feature high."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["real", "a", "b", "c"], n, p=[0.5, 0.2, 0.15, 0.15])
    labels = (kind != "real").astype(int)
    x = rng.normal(size=(n, 4))
    x[kind == "a", 0] += 8.0
    x[kind == "b", 1] += 8.0
    x[kind == "c", 2] += 8.0
    splits = rng.choice(["train", "validation", "test"], n, p=[0.6, 0.2, 0.2])
    return x, labels, splits, kind


def probe_row(x: np.ndarray, labels: np.ndarray, splits: np.ndarray, left_out: np.ndarray,
              threshold_from: np.ndarray) -> dict:
    masks = masks_for(splits, labels, left_out, threshold_from)
    return scored_row(probe_scores(x, labels, masks["train"], C=0.1), labels, masks)


def test_a_left_out_family_is_neither_trained_on_nor_used_for_the_threshold() -> None:
    x, labels, splits, kind = synthetic_rows()
    family_b = kind == "b"
    nothing = np.zeros(len(labels), bool)
    unseen = probe_row(x, labels, splits, family_b, nothing)
    assert unseen["unseen_n_fake"] == family_b.sum()
    assert unseen["unseen_n_real"] == ((splits == "test") & (labels == 0)).sum()
    trained = probe_row(x, labels, splits, nothing, nothing)  # nothing left out: scored on the test split
    assert trained["unseen_n_fake"] == ((splits == "test") & (labels == 1)).sum()
    assert unseen["seen_roc_auc"] > 0.95 and trained["unseen_roc_auc"] > 0.95
    assert unseen["unseen_roc_auc"] < trained["unseen_roc_auc"] - 0.1  # b's own trait was never learned


def test_a_threshold_from_another_left_out_family_comes_from_its_images() -> None:
    x, labels, splits, kind = synthetic_rows()
    family_a, family_b = kind == "a", kind == "b"
    plain = probe_row(x, labels, splits, family_a, np.zeros(len(labels), bool))
    from_b = probe_row(x, labels, splits, family_a, family_b)
    assert from_b["threshold"] != plain["threshold"]
    assert from_b["unseen_n_fake"] == plain["unseen_n_fake"] == family_a.sum()
    one_class = {**from_b, "seen_roc_auc": None}  # a seen test split left with reals only has no AUC
    row = {"features": "f", "split_seed": 0, "left_out": "a", "threshold_from": "validation + b", **one_class}
    assert feature_probe_table([row]).endswith("| n/a |")


@pytest.fixture(scope="module")
def noise_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(2)
    for label in ("real", "fake"):
        folder = root / label / ("camera" if label == "real" else "upsampler")
        folder.mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return root


def test_features_come_from_the_packaged_backbone_once_then_from_the_cache(noise_tree: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["--image-size", "64", "--blocks", "0", "2", "--runs", str(tmp_path / "runs"),
                                      "--face-cache", str(tmp_path / "faces")])
    rows, _ = every_row(TrainConfig(data=[str(noise_tree)]))
    features = cached_features(rows, args)
    assert features.shape == (len(rows), 2 * (16 + 40))  # Lite0's blocks 0 and 2: 16 and 40 channels, mean and std
    assert np.isfinite(features).all() and not np.allclose(features[0], features[1])

    def recomputed(*_: object) -> np.ndarray:
        raise AssertionError("features were recomputed although the rows did not change")

    monkeypatch.setattr(feature_probe, "face_features", recomputed)
    assert np.array_equal(cached_features(rows, args), features)


def test_a_rerun_replaces_its_rows_in_place_and_new_rows_follow(tmp_path: Path) -> None:
    def row(left_out: str, value: float, seed: int = 0) -> dict:
        return {"features": "f", "C": 0.1, "split_seed": seed, "left_out": left_out, "threshold_from": "validation",
                "unseen_roc_auc": value}

    report = tmp_path / "reports" / "probe.json"
    save_rows(report, [row("none", 0.9), row("stylegan", 0.6), row("diffusion", 0.5)], probe_key)
    merged = save_rows(report, [row("none", 0.8), row("rees451_lfw", 0.7), row("stylegan", 0.4, seed=1)], probe_key)
    assert json.loads(report.read_text()) == merged
    assert [(r["left_out"], r["split_seed"], r["unseen_roc_auc"]) for r in merged] == [
        ("none", 0, 0.8), ("stylegan", 0, 0.6), ("diffusion", 0, 0.5), ("rees451_lfw", 0, 0.7), ("stylegan", 1, 0.4)]


def test_fusion_averages_the_two_logits() -> None:
    p = np.array([0.1, 0.5, 0.9, 0.99])
    assert np.allclose(fused(p, p), p)
    assert np.allclose(fused(p, 1 - p), 0.5)
    assert np.allclose(fused(np.array([0.0]), np.array([1.0])), 0.5)  # clipped, so certainty on both sides stays finite
    assert parse_fuse(["none=models/a", "stylegan=runs/x=y"]) == {"none": "models/a", "stylegan": "runs/x=y"}
    with pytest.raises(ValueError, match="LEFT_OUT=FOLDER"):
        parse_fuse(["models/a"])


def test_a_fused_model_scores_through_the_inference_path(noise_tree: Path, model_dir: Path, tmp_path: Path) -> None:
    from hub_utils import load_detector
    from training.dataset import image_of
    from training.perturb import neutral_reencode

    rows, _ = every_row(TrainConfig(data=[str(noise_tree)]))
    wanted = np.arange(len(rows)) % 3 == 0
    scores = detector_scores([str(model_dir)], rows, wanted, str(tmp_path / "faces"))
    assert np.isnan(scores[~wanted]).all() and np.isfinite(scores[wanted]).all()
    first = int(np.flatnonzero(wanted)[1])
    expected = load_detector(model_dir).predict([neutral_reencode(image_of(rows[first]))])[0].fake_probability
    assert scores[first] == pytest.approx(expected)


def test_several_folders_score_as_the_apps_ensemble(noise_tree: Path, model_dir: Path, tmp_path: Path) -> None:
    from hub_utils.ensemble import load_ensemble
    from training.dataset import image_of
    from training.perturb import neutral_reencode

    other = make_model_folder(tmp_path / "tiny-b", seed=1)
    rows, _ = every_row(TrainConfig(data=[str(noise_tree)]))
    wanted = np.arange(len(rows)) % 4 == 0
    alone = [detector_scores([str(folder)], rows, wanted, str(tmp_path / "faces"))
             for folder in (model_dir, other)]
    together = detector_scores([str(model_dir), str(other)], rows, wanted, str(tmp_path / "faces"))
    assert not np.allclose(alone[0][wanted], alone[1][wanted])  # two different models, so the mean is a real test
    assert np.allclose(together[wanted], (alone[0][wanted] + alone[1][wanted]) / 2)
    first = int(np.flatnonzero(wanted)[1])
    app = load_ensemble([str(model_dir), str(other)]).predict([neutral_reencode(image_of(rows[first]))])[0]
    assert together[first] == pytest.approx(app.ensemble.fake_probability)
