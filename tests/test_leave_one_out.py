"""The leave-one-out bench's data selection: what a run never sees is exactly what it is tested on."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.common import DIFFUSION_ERA, FAMILIES, GENERATOR_PREFIX, GROUP_SETS, GROUPS, exclusion_rules, rule_mask
from bench.leave_one_out import (
    build_parser,
    held_out_rows,
    left_out_names,
    main,
    parse_settings,
    row_key,
    run_config,
    variant_of,
)
from training.config import TrainConfig
from training.data import load_source
from training.pipeline import build_splits

# The fake generators of ../shared/data/faces from before the diffusion era, or made without a generative network
OLDER_FAKES = {"stylegan", "stylegan2", "stylegan3", "stylegan_family_unverified", "stylegan2_ffhq",
               "stylegan2_e4e_inversion", "stylegan2_100shot_obama", "stylegan2_diffaugment_100shot_obama",
               "styleswin_ffhq", "pggan_reimpl", "attgan", "stargan", "elegant", "gdwct", "vqgan_transformer_faceshq",
               "faceswap", "digiface_render"}


def write_noise_source(root: Path, source: str, labels: tuple[str, ...], seed: int) -> None:
    """20 distinct noise images per label; reals come from `camera`, fakes from `upsampler`."""
    rng = np.random.default_rng(seed)
    for label in labels:
        folder = root / source / label / ("camera" if label == "real" else "upsampler")
        folder.mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`studio` holds reals and fakes, `phone` reals only; every image is distinct noise."""
    root = tmp_path_factory.mktemp("sources")
    write_noise_source(root, "studio", ("real", "fake"), seed=1)
    write_noise_source(root, "phone", ("real",), seed=2)
    return root


def test_rules_name_a_family_by_its_generators_and_anything_else_as_a_source() -> None:
    assert "generator=stylegan2" in exclusion_rules("stylegan")
    assert exclusion_rules("rees451_lfw") == ["source=rees451_lfw"]
    assert exclusion_rules("generator=stylegan") == ["generator=stylegan"]  # the generator, not the family
    assert exclusion_rules("generator=flux1_pro+flux1_dev") == ["generator=flux1_pro", "generator=flux1_dev"]
    assert exclusion_rules("studio+phone") == ["source=studio", "source=phone"]


def test_named_groups_match_the_real_faces_and_cover_every_diffusion_era_generator(faces_dir: Path) -> None:
    rows = load_source(str(faces_dir)).select_columns(["label", "generator", "source"])
    labels, generators = np.asarray(rows["label"]), np.asarray(rows["generator"])
    for name, rules in GROUPS.items():
        for rule in rules:
            assert rule_mask(rows, [rule]).any(), f"{name}: {rule} matches no image of {faces_dir}"
        kind = {1} if name in GROUP_SETS["modern_fakes"] else {0}
        assert set(labels[rule_mask(rows, rules)]) == kind, name
    assert set(generators[labels == 1]) - OLDER_FAKES == set(DIFFUSION_ERA)  # a new generator must be placed
    assert set(FAMILIES["diffusion"]) <= set(DIFFUSION_ERA)
    assert sorted(GROUPS) == sorted(group for groups in GROUP_SETS.values() for group in groups)


def test_named_groups_and_their_sets_are_runs_of_the_cli(two_sources: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    args = build_parser().parse_args(["--families", "--groups", "new_reals", "diffusion_era", "--runs", str(tmp_path)])
    assert left_out_names(args) == [*GROUP_SETS["new_reals"], "diffusion_era"]
    config = run_config("diffusion_era", "resize", args)
    assert config.exclude == exclusion_rules("diffusion_era") and "generator=storymaker_sdxl" in config.exclude
    assert Path(config.output) == tmp_path / "diffusion_era-resize"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--groups", "diffusion"])  # a family, given with --families
    with pytest.raises(SystemExit) as usage_error:
        main(["--data", str(two_sources), "--families", "--groups", "old_photo_scans", "--runs", str(tmp_path)])
    assert usage_error.value.code == 2 and "generator=scanned_old_photo matches no image" in capsys.readouterr().err


def test_a_left_out_generator_group_runs_once_and_names_its_folder(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--generators", "flux1_pro+flux1_dev", "--runs", str(tmp_path)])
    config = run_config(GENERATOR_PREFIX + args.generators[0], "resize", args)
    assert config.exclude == ["generator=flux1_pro", "generator=flux1_dev"]
    assert Path(config.output) == tmp_path / "generator-flux1_pro+flux1_dev-resize"


def test_a_left_out_name_that_matches_no_image_is_refused_before_training(two_sources: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    argv = ["--data", str(two_sources), "--runs", str(tmp_path / "runs"), "--output", str(tmp_path / "loo.json"),
            "--families", "--generators"]
    refusals = [(["upsampler+upsamplr"], "generator=upsamplr matches no image.*Generators there: camera, upsampler"),
                (["upsampler", "--sources", "studi"], "source=studi matches no image.*sources: phone, studio"),
                (["upsampler", "--sources", "studio+phon"], "source=phon matches no image")]
    for extra, message in refusals:
        with pytest.raises(SystemExit) as usage_error:
            main([*argv, *extra])
        assert usage_error.value.code == 2 and re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "loo.json").exists()


def test_leaving_out_every_fake_is_refused_with_the_reason(two_sources: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="The train split holds no fake images"):
        main(["--data", str(two_sources), "--families", "--sources", "studio", "--runs", str(tmp_path / "runs"),
              "--output", str(tmp_path / "loo.json")])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "loo.json").exists()


def test_a_left_out_real_source_is_tested_with_the_test_splits_fakes(two_sources: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=[str(two_sources)], output=str(tmp_path / "run"), exclude=["source=phone"])
    unseen, seen = held_out_rows(config, ["source=phone"])
    test = build_splits(TrainConfig(data=[str(two_sources)], output=str(tmp_path / "run")))["test"]
    assert sorted(unseen["source"]).count("phone") == 20  # every split's phone images, none of which trained
    assert sorted(unseen.filter(lambda row: row["source"] != "phone")["path"]) == sorted(
        test.filter(lambda row: row["label"] == 1)["path"])
    assert "phone" not in seen["source"] and len(seen) == len(test.filter(lambda row: row["source"] != "phone"))
    assert "phone" not in build_splits(config)["train"]["source"]


def test_a_left_out_source_with_both_classes_is_tested_on_its_own_images_alone(two_sources: Path,
                                                                               tmp_path: Path) -> None:
    config = TrainConfig(data=[str(two_sources)], output=str(tmp_path / "run"), exclude=["source=studio"])
    unseen, seen = held_out_rows(config, ["source=studio"])
    assert set(unseen["source"]) == {"studio"} and sorted(unseen["label"]) == [0] * 20 + [1] * 20
    assert set(seen["source"]) == {"phone"}
    assert all("studio" not in build_splits(config)[name]["source"] for name in ("train", "validation"))


def test_a_left_out_generator_is_tested_with_the_test_splits_reals(two_sources: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=[str(two_sources)], output=str(tmp_path / "run"))
    unseen, _ = held_out_rows(config, ["generator=upsampler"])
    assert sum(unseen["label"]) == 20
    reals = unseen.filter(lambda row: row["label"] == 0)
    test = build_splits(config)["test"]
    assert sorted(reals["path"]) == sorted(test.filter(lambda row: row["label"] == 0)["path"]) and len(reals) > 0


def test_a_second_seed_tests_on_its_own_draw_of_the_splits(two_sources: Path, tmp_path: Path) -> None:
    reals_by_seed = {}
    for seed in (0, 1):
        config = run_config("upsampler", "resize", build_parser().parse_args(
            ["--data", str(two_sources), "--seed", str(seed), "--runs", str(tmp_path)]))
        unseen, _ = held_out_rows(config, ["generator=upsampler"])
        test = build_splits(config)["test"]
        reals_by_seed[seed] = sorted(unseen.filter(lambda row: row["label"] == 0)["path"])
        assert reals_by_seed[seed] == sorted(test.filter(lambda row: row["label"] == 0)["path"])
    assert reals_by_seed[0] != reals_by_seed[1]
    row = {"left_out": "stylegan", "mode": "resize", "variant": ""}
    assert row_key(row) == row_key({**row, "seed": 0}) != row_key({**row, "seed": 1})
    assert row_key({**row, "seed": 1}) != row_key({**row, "seed": 1, "split_seed": 0})
    same_split = run_config("upsampler", "resize", build_parser().parse_args(
        ["--data", str(two_sources), "--seed", "1", "--split-seed", "0", "--runs", str(tmp_path)]))
    assert (same_split.seed, same_split.split_seed) == (1, 0) and same_split.output.endswith("-seed1-split0")
    assert sorted(held_out_rows(same_split, ["generator=upsampler"])[0].filter(
        lambda row: row["label"] == 0)["path"]) == reals_by_seed[0]  # training randomness alone changes


def test_augmentation_settings_parse_as_json_values() -> None:
    assert parse_settings(["jpeg_p=0.3", "jpeg_quality=[50, 100]"]) == {"jpeg_p": 0.3, "jpeg_quality": [50, 100]}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["jpeg_p"])
    with pytest.raises(ValueError, match="JSON value"):
        parse_settings(["jpeg_quality=(50, 100)"])


def test_a_variant_names_its_run_folder_and_its_row() -> None:
    args = build_parser().parse_args(["--modes", "tile", "--image-size", "64",
                                      "--augment", "jpeg_quality=[50, 100]", "--seed", "2", "--runs", "r"])
    config = run_config("stylegan", "tile", args)
    assert variant_of(args) == "64px jpeg_quality=[50,100]"
    assert config.output == str(Path("r") / "stylegan-tile-64px-jpeg_quality[50,100]-seed2")
    assert (config.image_size, config.preprocessing, config.split_seed) == (64, "tile", 2)
    assert config.augment.jpeg_quality == (50, 100)
    longer = build_parser().parse_args(["--epochs", "5", "--runs", "r"])
    assert variant_of(longer) == "epochs=5" and run_config("stylegan", "resize", longer).epochs == 5
    assert run_config("stylegan", "resize", longer).output == str(Path("r") / "stylegan-resize-epochs5")
    plain = build_parser().parse_args(["--runs", "r"])
    assert (variant_of(plain) == ""
            and run_config("stylegan", "resize", plain).output == str(Path("r") / "stylegan-resize"))


def test_a_config_file_is_the_recipe_that_the_bench_changes(tmp_path: Path) -> None:
    recipe = {"backbone": "tf_efficientnet_lite2", "pretrained": "packaged", "data": ["elsewhere"],
              "output": "models/x", "epochs": 12, "image_size": 224, "patience": 4, "face_margin": 0.5,
              "exclude": ["source=private"], "holdout": ["generator=sdxl"],
              "augment": {"mode": "crop", "downscale_p": 0.3}}
    path = tmp_path / "lite2-recipe.json"
    path.write_text(json.dumps(recipe))
    args = build_parser().parse_args(["--config", str(path), "--epochs", "2", "--augment", "jpeg_p=0.4", "--runs", "r"])
    config = run_config("stylegan", "crop", args)
    assert variant_of(args) == "lite2-recipe epochs=2 jpeg_p=0.4"
    assert config.output == str(Path("r") / "stylegan-crop-lite2-recipe-epochs2-jpeg_p0.4")
    assert (config.backbone, config.image_size, config.face_margin, config.holdout) == (
        "tf_efficientnet_lite2", 224, 0.5, ["generator=sdxl"])
    assert (config.epochs, config.patience, config.data) == (2, 2, ["../shared/data/faces"])  # trained to the end
    assert config.exclude == ["source=private", *exclusion_rules("stylegan")]
    assert (config.augment.downscale_p, config.augment.jpeg_p, config.preprocessing) == (0.3, 0.4, "crop")
    as_given = build_parser().parse_args(["--config", str(path), "--image-size", "224"])
    assert variant_of(as_given) == "lite2-recipe" and run_config("stylegan", "crop", as_given).epochs == 12


def test_a_left_out_source_row_gives_each_of_its_generators_accuracy(two_sources: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(two_sources, data)
    write_noise_source(data, "lab", ("real", "fake"), seed=3)  # without it, training would see no fake
    output = tmp_path / "loo.json"
    main(["--data", str(data), "--families", "--sources", "studio", "--epochs", "1", "--image-size", "32",
          "--runs", str(tmp_path / "runs"), "--output", str(output)])
    [row] = json.loads(output.read_text())
    assert row["left_out"] == "studio" and row["unseen_n_fake"] == row["unseen_n_real"] == 20
    per_generator = row["unseen_accuracy_per_generator"]
    assert {name: group["n"] for name, group in per_generator.items()} == {"camera": 20, "upsampler": 20}
    fake_recall, real_recall = per_generator["upsampler"]["accuracy"], per_generator["camera"]["accuracy"]
    assert (fake_recall, real_recall) == (row["unseen_fake_recall"], row["real_recall"])


def test_a_trained_run_is_reused_only_while_it_was_trained_on_todays_split(two_sources: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(two_sources, data)
    write_noise_source(data, "lab", ("real", "fake"), seed=3)
    argv = ["--data", str(data), "--families", "--sources", "phone", "--epochs", "1", "--image-size", "32",
            "--runs", str(tmp_path / "runs"), "--output", str(tmp_path / "loo.json")]
    main(argv)
    [folder] = (tmp_path / "runs").iterdir()
    trained_at = (folder / "model.safetensors").stat().st_mtime_ns
    main(argv)  # nothing changed: the run is reused
    assert (folder / "model.safetensors").stat().st_mtime_ns == trained_at
    write_noise_source(data, "scans", ("real",), seed=4)  # the data grows: the old run no longer fits its split
    main(argv)
    assert (folder / "model.safetensors").stat().st_mtime_ns != trained_at
    seen = json.loads((folder / "seen_images.json").read_text())
    assert sorted(seen["trained"]) == sorted(build_splits(run_config_for(argv))["train"]["path"])


def run_config_for(argv: list[str]) -> TrainConfig:
    """The config of the single run that `argv` asks for."""
    args = build_parser().parse_args(argv)
    return run_config(left_out_names(args)[0], "resize", args)
