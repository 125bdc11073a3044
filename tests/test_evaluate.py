"""Evaluation through the one inference path: report keys, breakdowns, perturbations, plots, card update."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from hub_utils import load_detector
from hub_utils.ensemble import load_ensemble
from tests.conftest import make_model_folder
from tests.test_train import write_generated_tree
from training.data import load_sources
from training.evaluate import main
from training.evaluation import evaluate
from training.perturb import neutral_reencode
from training.quality import processing_matched_sources

REPORT_KEYS = {"n", "accuracy", "balanced_accuracy", "roc_auc", "average_precision", "eer", "threshold", "per_class",
               "confusion_matrix", "per_generator", "per_source", "per_perturbation", "majority_baseline"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_generated_tree(tmp_path_factory.mktemp("eval") / "synthetic", per_class=10)


def test_report_plots_and_card(tree: Path, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "tiny-eval", seed=3, threshold=0.4)
    output = tmp_path / "reports" / "tiny.json"
    assert main(["--model", str(folder), "--data", str(tree), "--output", str(output), "--neutral",
                 "--perturbations", "jpeg:medium,mirror:strong", "--update-card"]) == 0
    report = json.loads(output.read_text())
    assert REPORT_KEYS <= set(report)
    assert report["n"] == 20 and report["threshold"] == 0.4 and report["setting"] == "neutral"
    assert set(report["per_generator"]) == {"camera", "upsampler"} and set(report["per_source"]) == {"synthetic"}
    assert set(report["per_perturbation"]) == {"jpeg/medium", "mirror/strong"}
    assert report["per_processing"]["matched"]["n"] == 20  # real and fake files are 64 px PNGs alike
    assert report["majority_baseline"]["accuracy"] == 0.5
    plots = {p.name for p in (output.parent / "tiny_tiny-eval").iterdir()}
    assert {"confusion_matrix.png", "roc.png", "reliability.png", "per_generator.png", "per_perturbation.png"} <= plots
    # the same scores as the detector itself on the same neutral images
    files = sorted(tree.rglob("*.png"))
    detector = load_detector(folder)
    direct = [r.fake_probability for r in detector.predict([neutral_reencode(Image.open(f)) for f in files])]
    labels = [0 if "real" in f.parts else 1 for f in files]
    ordered = dict(zip(map(tuple, zip(report["labels"], np.round(report["scores"], 6))), range(len(files))))
    assert sorted(zip(labels, np.round(direct, 6))) == sorted(ordered)
    card = (folder / "README.md").read_text()
    assert "all_neutral" in card and "Per generator" in card and "upsampler" in card
    assert json.loads((folder / "evaluation.json").read_text())["split"] == "all"


def test_two_models_give_an_ensemble_report(tree: Path, tmp_path: Path) -> None:
    a = make_model_folder(tmp_path / "a", seed=4)
    b = make_model_folder(tmp_path / "b", seed=5)
    output = tmp_path / "both.json"
    assert main(["--model", str(a), "--model", str(b), "--data", str(tree), "--output", str(output)]) == 0
    reports = json.loads(output.read_text())
    assert set(reports) == {"a", "b", "ensemble"}
    mean = (np.array(reports["a"]["scores"]) + np.array(reports["b"]["scores"])) / 2
    np.testing.assert_allclose(reports["ensemble"]["scores"], mean, atol=1e-6)


def test_bad_split_name_is_a_usage_error(tree: Path, model_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["--model", str(model_dir), "--data", str(tree), "--split", "tset", "--output",
                 str(tmp_path / "x.json")]) == 2
    assert "tset" in capsys.readouterr().err


def test_an_unusable_output_path_fails_before_any_image_is_scored(tree: Path, model_dir: Path, tmp_path: Path,
                                                                  capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["--model", str(model_dir), "--data", str(tree), "--perturbations", "all", "--output",
                 str(blocker / "report.json")]) == 2
    assert "cannot create the folder for --output" in capsys.readouterr().err


def test_processing_match_is_decided_on_the_whole_folder(tree: Path, tmp_path: Path) -> None:
    """A split holding one label cannot show that its source is processing-matched; the folder can."""
    ensemble = load_ensemble([str(make_model_folder(tmp_path / "m", seed=6))])
    everything = load_sources([str(tree)])
    reals = everything.filter(lambda row: row["label"] == 0)
    on_split = evaluate(ensemble, reals, neutral=False, perturbations=None)["m"]
    on_folder = evaluate(ensemble, reals, neutral=False, perturbations=None,
                         matched_sources=processing_matched_sources(everything))["m"]
    assert set(on_split["per_processing"]) == {"mixed"}
    assert set(on_folder["per_processing"]) == {"matched"} and on_folder["per_processing"]["matched"]["n"] == 10


def test_metrics_never_read_provenance(tree: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every figure comes from pixels: with the provenance reader broken, the evaluation still runs, and the neutral
    re-encoding it scores leaves no metadata to read."""
    import hub_utils.provenance as provenance

    def refuse(*_: object) -> None:
        raise AssertionError("the evaluation read provenance")

    monkeypatch.setattr(provenance, "_File", refuse)  # read_provenance builds one first, whoever imported it
    with pytest.raises(AssertionError, match="read provenance"):
        provenance.read_provenance(b"")
    report = evaluate(load_ensemble([str(model_dir)]), load_sources([str(tree)]), neutral=True,
                      perturbations="medium")
    assert report[model_dir.name]["n"] == 20
    monkeypatch.undo()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a face\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    declared = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 40, 20)).save(declared, format="PNG", pnginfo=info)
    assert provenance.read_provenance(declared.getvalue()).claim == "generated"
    reencoded = io.BytesIO()
    neutral_reencode(Image.open(declared)).save(reencoded, format="PNG")
    assert provenance.read_provenance(reencoded.getvalue()).claim == "none"
