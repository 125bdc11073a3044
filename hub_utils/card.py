"""Model cards built with huggingface_hub's ModelCard, ModelCardData and EvalResult from the folder's own files:
`config.json` (deepfake section: training data, validation metrics) and, when present, `evaluation.json`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .model_folder import CARD_NAME, CONFIG_NAME

EVALUATION_NAME = "evaluation.json"
DATA_TERMS = ("Trained on ../shared/data/faces: FFHQ (CC BY-NC-SA 4.0), CelebA (non-commercial research), LFW and "
              "StyleGAN outputs (NVIDIA non-commercial licences), and tiles from public repositories. The weights "
              "are the project's own work and, like their data, are for research and non-commercial use only.")
FLIP_NOTE = (" for one view; `load_detector` averages the logits of each face and its mirror image, as the threshold "
             "and temperature were fitted, and timm or transformers users can do the same")
NPR_NOTE = ("; the network sees the NPR residual of its input, `hub_utils.preprocess.npr_residual`, which bare timm "
            "or transformers users must apply themselves")
STEM_NOTE = ("; its stem convolution runs at stride 1 (`hub_utils.model_folder.full_resolution_stem`), which bare timm "
             "users must set after loading: `model.conv_stem.stride = (1, 1)`")
BLOCKS_NOTE = ("; it is a patch classifier on the stem and the first {blocks} blocks, with a new 1x1 `conv_head` "
               "(`hub_utils.model_folder.keep_early_blocks`), which timm's config cannot describe, so transformers "
               "cannot build it and bare timm users build it in three steps: `timm.create_model(\"local-dir:...\", "
               "pretrained=False)`, `keep_early_blocks(model, {blocks})`, then "
               "`model.load_state_dict(safetensors.torch.load_file(\".../model.safetensors\"))`")
HEADLINE = ("accuracy", "balanced_accuracy", "roc_auc", "average_precision")

TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

{{ status }}

A real-vs-GAN face-image detector (`{{ architecture }}`, {{ preprocessing }} preprocessing at {{ size }} px, face crop
{{ face_crop }}{{ npr }}{{ stem }}{{ blocks }}). Output: P(fake), calibrated by temperature scaling (folded into the classifier, so timm and
transformers give the same probability{{ flip }}); verdict `fake` when P(fake) >= **{{ threshold }}**.

## Use

```python
from hub_utils import load_detector            # this project's inference path: face crop + preprocessing
detector = load_detector("{{ name }}")          # a local folder or "owner/name@revision" on the Hub
print(detector.predict(["face.jpg"])[0].faces)

import timm                                     # bare model on an already cropped face
model = timm.create_model("local-dir:{{ name }}", pretrained=True)   # or "hf-hub:owner/name"

from transformers import pipeline
pipeline("image-classification", model="{{ name }}")
```
From a running Space: `gradio_client.Client(url).predict(handle_file("face.jpg"), api_name="/detect")`.

## Training data and terms

{{ terms }}

{{ initialised }}

{{ data_table }}

## Results

{{ results }}

## Intended use and limitations

Intended for research on detecting fully GAN-generated face photographs (StyleGAN family, attribute-editing GANs
such as AttGAN and StarGAN). Not for video, not for face swaps or other partial manipulations, and weak on text-to-image
diffusion faces (few in training). Scores are evidence, not proof: never use a verdict alone to accuse a person.
Real photos unlike every real photo in training (another camera, collection or processing) are the likeliest false
alarms: in the project's leave-one-out tests, a model trained without a kind of real photo called most of those
photos fake, even where it caught the fakes made in their likeness.
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


def _plots_markdown(folder: Path) -> str:
    """Image links for the plots that the folder holds."""
    names = ("training_curves.png", "confusion_matrix.png", "roc.png", "reliability.png", "per_generator.png",
             "per_perturbation.png")
    return "\n".join(f"![{name.removesuffix('.png')}]({name})" for name in names if (folder / name).is_file())


def _initialisation(training_data: dict[str, Any]) -> str:
    """Where the weights started (ImageNet, nothing, or another model folder), and whether they are a soup of runs."""
    start = training_data.get("pretrained")
    backbone = training_data.get("backbone", "the backbone")
    if start in (None, ""):
        return ""
    if start in ("hub", "packaged"):
        text = f"Initialised from ImageNet weights of {backbone} ({start})."
    elif start == "none":
        text = "Trained from random initialisation."
    else:
        text = f"Fine-tuned further from `{start}` (its weights; a new classifier head), at {training_data.get('image_size')} px."
    soup = training_data.get("weight_average")
    if soup:
        text += (f" The weights are the uniform average of {len(soup['members'])} runs of this recipe (seeds "
                 f"{', '.join(map(str, soup['seeds']))}: {', '.join(soup['members'])}), with BatchNorm statistics "
                 + (f"estimated afresh on {soup['batchnorm_batches']} training batches" if soup["batchnorm_batches"]
                    else "averaged too") + " (`python -m training.soup`).")
    return text


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
    size = config["pretrained_cfg"]["input_size"][-1]
    return ModelCard.from_template(
        data, template_str=TEMPLATE, name=name, architecture=config["architecture"], size=size,
        preprocessing=deepfake.get("preprocessing", "resize"), threshold=round(deepfake.get("threshold", 0.5), 4),
        face_crop="on" if deepfake.get("face_crop", {}).get("enabled", True) else "off",
        flip=FLIP_NOTE if deepfake.get("test_time_flip") else "",
        npr=NPR_NOTE if deepfake.get("npr") else "",
        stem=STEM_NOTE if deepfake.get("full_resolution_stem") else "",
        blocks=BLOCKS_NOTE.format(blocks=deepfake["kept_blocks"]) if deepfake.get("kept_blocks") else "",
        status="" if deepfake.get("trained", True) else "**UNTRAINED PLACEHOLDER: its scores mean nothing.**",
        terms=DATA_TERMS, data_table=data_table, initialised=_initialisation(training_data),
        results=_results_markdown(reports, evaluation) + "\n\n" + _plots_markdown(folder))


def write_model_card(folder: Path) -> Path:
    """Write README.md into the model folder."""
    path = Path(folder) / CARD_NAME
    build_model_card(folder).save(path)
    return path
