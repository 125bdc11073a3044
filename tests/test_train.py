"""Training end to end with a tiny backbone: trains, survives kill -9 and resumes, calibrates, writes a model
folder that timm and transformers load, and evaluates through the one inference path."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from hub_utils import load_detector
from hub_utils.card import write_model_card
from tests.conftest import REPO_ROOT, make_model_folder
from training.config import RETIRED_OPTIONS, TrainConfig
from training.pipeline import build_splits, data_summary
from training.train import build_parser, main, resolve_config


def write_generated_tree(root: Path, per_class: int = 24, size: int = 64) -> Path:
    """Reals: smooth noise. Fakes: half-resolution noise upsampled by nearest neighbour (a GAN-like 2x2 trace)."""
    rng = np.random.default_rng(0)
    for label, generator in (("real", "camera"), ("fake", "upsampler")):
        folder = root / label / generator
        folder.mkdir(parents=True)
        for i in range(per_class):
            if label == "real":
                image = Image.fromarray(rng.integers(0, 255, (size // 4, size // 4, 3), dtype=np.uint8)).resize(
                    (size, size), Image.BICUBIC)
            else:
                image = Image.fromarray(rng.integers(0, 255, (size // 2, size // 2, 3), dtype=np.uint8)).resize(
                    (size, size), Image.NEAREST)
            image.save(folder / f"{i:03d}.png")
    return root


def write_config(path: Path, data: list[str], output: Path, cache: Path, **overrides) -> Path:
    config = {"backbone": "test_efficientnet", "pretrained": "none", "data": data, "output": str(output),
              "epochs": 3, "image_size": 64, "batch_size": 8, "num_workers": 0, "max_steps_per_epoch": 3,
              "face_cache": str(cache), "patience": 5, "lr": 0.003, **overrides}
    path.write_text(json.dumps(config))
    return path


def run_training(config: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.train", "--config", str(config), *extra],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_generated_tree(tmp_path_factory.mktemp("generated"))


@pytest.mark.slow
def test_kill_and_resume_then_a_complete_model_folder(generated: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.json", [str(generated)], output, tmp_path / "faces", max_steps_per_epoch=6)
    process = subprocess.Popen([sys.executable, "-m", "training.train", "--config", str(config)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    state = output / "checkpoint" / "state.pt"
    deadline = time.time() + 240
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert state.exists(), "no checkpoint appeared"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    checkpoint_epoch = torch.load(state, map_location="cpu", weights_only=True)["progress"]["epoch"]
    assert 1 <= checkpoint_epoch < 3
    with open(output / "training_log.jsonl", "a") as log:  # a kill after an epoch's log line, before its checkpoint
        log.write(json.dumps({"epoch": checkpoint_epoch + 1}) + "\n" + '{"epoch": ')
    refused = run_training(config)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = run_training(config, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after epoch {checkpoint_epoch}" in resumed.stdout + resumed.stderr
    epochs = [json.loads(line)["epoch"] for line in (output / "training_log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert not (output / "checkpoint").exists()
    assert {"config.json", "model.safetensors", "README.md", "training_curves.png", "train_config.json"} <= {
        p.name for p in output.iterdir()}
    card = (output / "README.md").read_text()
    assert "model-index" in card and "balanced_accuracy" in card and "license: cc-by-nc-sa-4.0" in card


@pytest.mark.slow
def test_trained_folder_scores_the_same_everywhere(generated: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    done = run_training(write_config(tmp_path / "config.json", [str(generated)], output, tmp_path / "faces", epochs=2))
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((output / "config.json").read_text())
    deepfake = config["deepfake"]
    assert 0 < deepfake["threshold"] < 1 and deepfake["temperature"] > 0
    validation = deepfake["metrics"]["validation_neutral"]
    assert {"ece_before", "ece_after", "balanced_accuracy", "roc_auc"} <= set(validation)
    assert deepfake["training_data"]["splits"]["train"]
    assert deepfake["training_data"]["sources"] == [generated.name]  # its name, not this machine's path
    image = Image.open(next((generated / "fake" / "upsampler").iterdir())).convert("RGB")
    detector = load_detector(output)
    ours = detector.predict([image])[0]
    assert ours.faces[0].face is None  # no face in generated noise: the whole image is scored
    model = timm.create_model(f"local-dir:{output}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    with torch.no_grad():
        bare = model(transform(image).unsqueeze(0)).softmax(1)[0, 1].item()
    assert ours.fake_probability == pytest.approx(bare, abs=1e-5)
    from transformers import pipeline

    piped = {r["label"]: r["score"] for r in pipeline("image-classification", model=str(output))(image)}
    assert piped["fake"] == pytest.approx(bare, abs=1e-4)


@pytest.mark.slow
def test_trains_on_real_faces(faces_dir: Path, tmp_path: Path) -> None:
    tree = tmp_path / "faces"
    for source, label, generator, count in (("zoya2244_140k_subset", "real", "ffhq", 12),
                                            ("zoya2244_140k_subset", "fake", "stylegan", 12)):
        target = tree / label / generator
        target.mkdir(parents=True)
        for path in sorted((faces_dir / source / label / generator).iterdir())[:count]:
            shutil.copy(path, target / path.name)
    output = tmp_path / "run"
    done = run_training(write_config(tmp_path / "config.json", [str(tree)], output, tmp_path / "cache", epochs=1,
                                     max_steps_per_epoch=2, augment={"mode": "crop"}))
    assert done.returncode == 0, done.stderr[-3000:]
    detector = load_detector(output)
    assert detector.deepfake.preprocessing == "crop"
    result = detector.predict([next((tree / "real" / "ffhq").iterdir())])[0]
    assert result.face_found and 0.0 <= result.fake_probability <= 1.0


def test_offline_hub_weights_fail_at_once_naming_the_choices(tmp_path: Path, generated: Path) -> None:
    config = write_config(tmp_path / "config.json", [str(generated)], tmp_path / "run", tmp_path / "faces",
                          pretrained="hub")
    done = subprocess.run([sys.executable, "-m", "training.train", "--config", str(config)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "HF_HUB_OFFLINE=1" in done.stderr and "packaged" in done.stderr and "none" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_config_keys_are_refused(tmp_path: Path, generated: Path) -> None:
    config = write_config(tmp_path / "config.json", [str(generated)], tmp_path / "run", tmp_path / "faces",
                          learning_rate=0.1)
    done = run_training(config)
    assert done.returncode == 2 and "learning_rate" in done.stderr


@pytest.mark.parametrize(("overrides", "message"), [
    ({"exclude": ["generator=upsampler"]}, "The train split holds no fake images"),
    ({"batch_size": 64}, "fewer than one batch of 64"),
])
def test_splits_that_cannot_train_are_refused_before_any_folder_is_written(
        tmp_path: Path, generated: Path, capsys: pytest.CaptureFixture[str], overrides: dict, message: str) -> None:
    config = write_config(tmp_path / "config.json", [str(generated)], tmp_path / "run", tmp_path / "faces", **overrides)
    assert main(["--config", str(config)]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_holdout_leaves_training_only_and_the_card_says_so(tmp_path: Path, generated: Path) -> None:
    held = TrainConfig(data=[str(generated)], output=str(tmp_path / "run"), holdout=["generator=upsampler"])
    splits = build_splits(held)
    assert "upsampler" not in list(splits["train"]["generator"])
    assert "upsampler" in list(splits["validation"]["generator"])
    excluded = build_splits(TrainConfig(data=[str(generated)], output=str(tmp_path / "run"),
                                        exclude=["generator=upsampler"]))
    assert "upsampler" not in list(excluded["train"]["generator"]) + list(excluded["validation"]["generator"])
    folder = make_model_folder(tmp_path / "held", training_data=data_summary(splits, held))
    card = write_model_card(folder).read_text()
    assert "| fake/upsampler | 0 |" in card and "never saw: generator=upsampler" in card


def test_training_seed_keeps_the_split_and_split_seed_redraws_it(tmp_path: Path, generated: Path) -> None:
    def test_files(**seeds: int) -> list[str]:
        config = TrainConfig(data=[str(generated)], output=str(tmp_path / "run"), **seeds)
        return sorted(build_splits(config)["test"]["path"])

    assert test_files(seed=1) == test_files(seed=0)
    assert test_files(split_seed=1) != test_files(split_seed=0)
    args = build_parser().parse_args(["--data", str(generated), "--output", "out", "--seed", "3", "--split-seed", "2"])
    assert (resolve_config(args).seed, resolve_config(args).split_seed) == (3, 2)


@pytest.mark.slow
def test_one_seed_trains_the_same_weights_twice_without_data_workers(tmp_path: Path, generated: Path) -> None:
    """The sample-level draw (neutral re-encoding) comes from Python's `random` and the augmentation
    from albumentations' own generator; with num_workers=0 both run in the main process, where the seed must set
    them."""
    weights = []
    for run_name in ("a", "b"):
        output = tmp_path / run_name
        done = run_training(write_config(tmp_path / f"{run_name}.json", [str(generated)], output, tmp_path / "faces",
                                         epochs=1, neutral_p=0.5))
        assert done.returncode == 0, done.stderr[-2000:]
        weights.append(load_file(str(output / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_fine_tuning_from_a_model_folder_at_another_size(tmp_path: Path, generated: Path) -> None:
    first = tmp_path / "first"
    done = run_training(write_config(tmp_path / "first.json", [str(generated)], first, tmp_path / "cache", epochs=1))
    assert done.returncode == 0, done.stderr[-3000:]
    second = tmp_path / "second"
    done = run_training(write_config(tmp_path / "second.json", [str(generated)], second, tmp_path / "cache", epochs=1,
                                     pretrained=str(first), image_size=96, seed=1))
    assert done.returncode == 0, done.stderr[-3000:]
    start, tuned = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    stem = "conv_stem.weight"
    assert not torch.equal(start[stem], tuned[stem])  # trained further, not a copy
    # from the first run's weights: a seed-1 init would differ
    assert torch.allclose(start[stem], tuned[stem], atol=0.05)
    assert load_detector(second).preprocess(Image.new("RGB", (200, 200))).shape[-1] == 96
    card = (second / "README.md").read_text()
    assert f"Fine-tuned further from `{first}`" in card and "at 96 px" in card
    assert "Trained from random initialisation." in (first / "README.md").read_text()


@pytest.mark.slow
def test_a_tile_model_trains_on_windows_and_is_scored_on_every_window(generated: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    done = run_training(write_config(tmp_path / "config.json", [str(generated)], output, tmp_path / "faces", epochs=1,
                                     image_size=32), "--preprocessing", "tile")
    assert done.returncode == 0, done.stderr[-3000:]
    detector = load_detector(output)
    assert detector.deepfake.preprocessing == "tile"
    image = Image.open(next((generated / "fake" / "upsampler").iterdir())).convert("RGB")  # 64 px: 2 x 2 windows
    windows = detector.preprocess(image)
    assert windows.shape == (4, 3, 32, 32)
    mean_logit = detector.fake_logits(windows).mean().item()
    assert detector.predict([image])[0].fake_probability == pytest.approx(1 / (1 + np.exp(-mean_logit)), abs=1e-6)


def test_train_configs_from_before_the_retired_options_load_unless_they_set_one() -> None:
    """Old `train_config.json` files hold the retired options at their defaults: ignored; one that set an option is
    refused with the commit that still has it."""
    for path in sorted((REPO_ROOT / "models").glob("*/train_config.json")):
        TrainConfig.from_file(path)
    old = TrainConfig(data=["d"], output="o").to_dict()
    for defaults in RETIRED_OPTIONS.values():
        old.update(defaults)
    assert TrainConfig.from_dict(old) == TrainConfig(data=["d"], output="o")
    for commit, name, value in (("d2a40e0", "sam_rho", 0.05), ("d2a40e0", "linear_probe", True),
                                ("d2a40e0", "kept_blocks", 3), ("8d270b4", "perturbed_weight", 0.25),
                                ("8d270b4", "train_perturbations", ["blur", "crop"])):
        with pytest.raises(ValueError, match=f"'{name}' is .*check out commit {commit}"):
            TrainConfig.from_dict({**old, name: value})


def test_options_of_one_kind_live_in_its_section_and_older_flat_files_still_load() -> None:
    """`frozen_head` holds the frozen head's options, present exactly when the run is of that kind; a file written
    before sections (the options top-level, `feature_blocks` naming the kind) reads the same; a section for another
    kind, an unknown option in it or a set option of it left top-level is refused."""
    from training.config import FrozenHeadOptions

    sectioned = TrainConfig.from_file(REPO_ROOT / "training" / "configs" / "clip-vitb16-probe.json")
    flat = TrainConfig.from_file(REPO_ROOT / "models" / "clip-vitb16-probe" / "train_config.json")
    assert sectioned.kind == flat.kind == "frozen_head"
    assert sectioned.frozen_head == flat.frozen_head == FrozenHeadOptions(blocks=[6, 8, 10, 12])
    assert TrainConfig.from_dict(flat.to_dict()) == flat and "feature_blocks" not in flat.to_dict()
    fine_tuned = TrainConfig.from_file(REPO_ROOT / "models" / "effnet-lite0-resize192" / "train_config.json")
    assert fine_tuned.kind == "fine_tuned" and fine_tuned.frozen_head is None
    assert "frozen_head" not in fine_tuned.to_dict()
    assert TrainConfig(kind="frozen_head").frozen_head == FrozenHeadOptions()  # the section's defaults
    for data, message in (({"frozen_head": {"probe_c": 1.0}}, "section holds options of the frozen_head kind"),
                          ({"kind": "frozen_head", "frozen_head": {"blocks": [12], "c": 1.0}}, "unknown keys.*: c"),
                          ({"probe_c": 1.0}, 'probe_c is an option of the frozen_head kind: set "kind"'),
                          ({"kind": "patch_head"}, "kind is 'patch_head'; use one of fine_tuned, frozen_head")):
        with pytest.raises(ValueError, match=message):
            TrainConfig.from_dict(data)


def test_command_line_options_of_the_frozen_head_go_into_its_section() -> None:
    recipe = str(REPO_ROOT / "models" / "clip-vitb16-probe" / "train_config.json")
    config = resolve_config(build_parser().parse_args(["--config", recipe, "--probe-c", "1.0"]))
    assert (config.kind, config.frozen_head.probe_c, config.frozen_head.blocks) == ("frozen_head", 1.0, [6, 8, 10, 12])
    fine_tuned = str(REPO_ROOT / "training" / "configs" / "effnet-lite0-crop128.json")
    config = resolve_config(build_parser().parse_args(["--config", fine_tuned, "--feature-blocks", "12"]))
    assert (config.kind, config.frozen_head.blocks) == ("frozen_head", [12])
    with pytest.raises(ValueError, match="--feature-blocks on the command line"):
        resolve_config(build_parser().parse_args(["--config", fine_tuned, "--probe-c", "2"]))
