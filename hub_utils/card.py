"""Model cards built with huggingface_hub's ModelCard, ModelCardData and EvalResult from the folder's own files:
`config.json` (deepfake section: training data, validation metrics) and, when present, `evaluation.json`. The text
that differs per kind of model (description, usage, initialisation) comes from the kind (`kinds.KINDS`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .constants import CARD_NAME, CONFIG_NAME, EVALUATION_NAME, LEAVE_ONE_OUT_NAME
from .kinds import KINDS, kind_of

DATA_TERMS = ("Trained on the project's face collection: FFHQ (CC BY-NC-SA 4.0), CelebA (non-commercial research), LFW "
              "and StyleGAN outputs (NVIDIA non-commercial licences), and tiles from public repositories. The weights "
              "are the project's own work and, like their data, are for research and non-commercial use only.")
HEADLINE = ("accuracy", "balanced_accuracy", "roc_auc", "average_precision")
TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

{{ status }}

{{ description }} Verdict `fake` when P(fake) >= **{{ threshold }}**.

## Use

{{ usage }}
From a running Space: `gradio_client.Client(url).predict(handle_file("face.jpg"), api_name="/detect")`.

## Training data and terms

{{ terms }}

{{ initialised }}

{{ data_table }}

## Results

{{ results }}

## Intended use and limitations

Intended for research on detecting generated face photographs: fully generated faces (StyleGAN family, PGGAN,
text-to-image diffusion) and faces edited by attribute GANs (AttGAN, StarGAN, ELEGANT, GDWCT). Not for video, not for
face swaps or other partial manipulations. Scores are evidence, not proof: never use a verdict alone to accuse a
person. Generators of a kind that no training image came from are the likeliest misses, and real photos unlike every
real photo in training (another camera, collection or processing) the likeliest false alarms: the project's
leave-one-out tests measure both, per generator family and real source.
Face detection (MTCNN) may miss faces; the whole image is then scored and flagged. No subgroup metadata exists in the
training data, so differences across age, gender or skin tone are unmeasured.
"""


def _table(rows: dict[str, dict[str, Any]], columns: tuple[str, ...]) -> str:
    """A Markdown table of metric dicts, one row per key."""
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in rows.items():
        cells = [f"{metrics[c]:.3f}" if isinstance(metrics.get(c), float) else str(metrics.get(c, "")) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _eval_results(name: str, reports: dict[str, dict[str, Any]]) -> list[EvalResult]:
    return [EvalResult(task_type="image-classification", dataset_type="face-deepfake", dataset_name=setting,
                       dataset_split=report.get("split", "validation"), metric_type=metric,
                       metric_value=round(float(report[metric]), 4))
            for setting, report in reports.items() for metric in HEADLINE if report.get(metric) is not None]


def _results_markdown(reports: dict[str, dict[str, Any]], evaluation: dict[str, Any] | None) -> str:
    parts = [_table(reports, ("n", "threshold") + HEADLINE)]
    for key, title in (("per_generator", "Per generator"), ("per_source", "Per source"),
                       ("per_processing", "Processing-matched sources (real and fake files alike) and the rest"),
                       ("per_perturbation", "Per perturbation")):
        if evaluation and evaluation.get(key):
            parts.append(f"### {title} ({evaluation.get('setting', 'test')})\n\n" + _table(
                evaluation[key], ("n", "accuracy", "balanced_accuracy", "roc_auc")))
    return "\n\n".join(parts)


def leave_one_out_markdown(folder: Path) -> str:
    """The folder's `leave_one_out.json` as a table (empty when the folder has none)."""
    path = folder / LEAVE_ONE_OUT_NAME
    if not path.is_file():
        return ""
    record = json.loads(path.read_text())
    lines = [f"### Left-out generators and sources ({record['recipe']}, `{record['measured_by']}`)", "",
             "The recipe trained again without each group, scored on it after neutral re-encoding at "
             f"{record['threshold']}; recall is that of the left-out class.", "",
             "| left out | kind | ROC-AUC | balanced accuracy | recall |", "|---|---|---|---|---|"]
    lines += [f"| {r['left_out']} | {r['kind']} | {r['roc_auc']:.3f} | {r['balanced_accuracy']:.3f} | "
              f"{r['recall']:.3f} |"
              for r in record["results"]]
    return "\n".join(lines)


def _plots_markdown(folder: Path) -> str:
    """Image links for the plots that the folder holds."""
    names = ("training_curves.png", "confusion_matrix.png", "roc.png", "reliability.png", "per_generator.png",
             "per_perturbation.png")
    return "\n".join(f"![{name.removesuffix('.png')}]({name})" for name in names if (folder / name).is_file())


def build_model_card(folder: Path) -> ModelCard:
    """The card of a model folder, from its config and evaluation files."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    deepfake = config.get("deepfake", {})
    evaluation_path = folder / EVALUATION_NAME
    evaluation = json.loads(evaluation_path.read_text()) if evaluation_path.is_file() else None
    reports = dict(deepfake.get("metrics", {}))
    if evaluation:
        reports.update(evaluation.get("headline", {}))
    name = folder.name
    data = ModelCardData(license="cc-by-nc-sa-4.0", library_name="timm", pipeline_tag="image-classification",
                         tags=["deepfake-detection", "face", "gan-detection", "timm", "image-classification"],
                         model_name=name, eval_results=_eval_results(name, reports) or None)
    training_data = deepfake.get("training_data", {})
    splits = training_data.get("splits", {})
    data_table = _table({k: {s: splits[s].get(k, 0) for s in splits} for k in sorted(set().union(*splits.values()))},
                        tuple(splits)) if splits else ""
    if training_data.get("held_out"):
        data_table += (f"\n\nHeld out of training but kept in validation, so that the threshold and temperature "
                       f"were chosen with a generator the model never saw: {', '.join(training_data['held_out'])}.")
    kind = KINDS[kind_of(config)]
    description, usage = kind.describe(name, config)
    return ModelCard.from_template(
        data, template_str=TEMPLATE, name=name, description=description, usage=usage,
        threshold=round(deepfake.get("threshold", 0.5), 4),
        status="" if deepfake.get("trained", True) else "**UNTRAINED PLACEHOLDER: its scores mean nothing.**",
        terms=DATA_TERMS, data_table=data_table,
        initialised=kind.initialisation(training_data) if training_data.get("pretrained") else "",
        results="\n\n".join(part for part in (_results_markdown(reports, evaluation), leave_one_out_markdown(folder),
                                                _plots_markdown(folder)) if part))


def write_model_card(folder: Path) -> Path:
    """Write README.md into the model folder."""
    path = Path(folder) / CARD_NAME
    build_model_card(folder).save(path)
    return path
