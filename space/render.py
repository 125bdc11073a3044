"""Turn the service's results into what the page shows: sentences, label values, Markdown and inline pictures.

Pictures derived from a visitor's photo are sent inline (data URIs inside HTML), so none of them is ever written
to Gradio's file cache on the server.
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from hub_utils.explain import RegionExplanation

PREVIEW_MAX_SIDE = 512
BOX_COLOURS = {"fake": (220, 38, 38), "real": (22, 163, 74)}


def percent(probability: float) -> str:
    return f"{probability:.1%}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def models_agreement(result: dict[str, Any]) -> str:
    """How the models split: how many call the headline's verdict, how many the other, how many are inconclusive."""
    models = list(result["models"].values())
    verdict = result["verdict"]
    other = "real" if verdict == "fake" else "fake"
    inconclusive = sum(m["inconclusive"] for m in models)
    same = sum(m["verdict"] == verdict and not m["inconclusive"] for m in models)
    parts = [_count(same, f"says {verdict}", f"say {verdict}"),
             _count(len(models) - same - inconclusive, f"says {other}", f"say {other}"),
             _count(inconclusive, "is inconclusive", "are inconclusive")]
    parts = [part for part in parts if not part.startswith("0 ")]
    listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    return f"Of {len(models)} models, {listed}."


def verdict_markdown(result: dict[str, Any]) -> str:
    """The headline's verdict in plain words: its P(fake) against its threshold, how the models split, and any
    caveat that limits it (no face found, untrained models) inside the verdict itself."""
    p, threshold, verdict = result["fake_probability"], result["threshold"], result["verdict"]
    who = "The models' mean P(fake) is" if result["headline"] == "ensemble" else f"`{result['headline']}` gives P(fake)"
    side = "at or above" if verdict == "fake" else "below"
    no_face = "" if result["face_found"] else " (no face found)"
    if result["inconclusive"]:
        lines = [f"## Inconclusive{no_face}, leaning {verdict}",
                 f"{who} {percent(p)}, too close to its threshold of {percent(threshold)} "
                 f"to call: the detector cannot tell either way. Do not rely on this result."]
    else:
        lines = [f"## Probably {verdict}{no_face}",
                 f"{who} {percent(p)}, {side} its threshold of {percent(threshold)}, so it calls this photo "
                 f"**{verdict}**. P(fake) is the model's calibrated estimate, not a guarantee."]
    if not result["face_found"]:
        lines[1] += (" No face was found, so the whole picture was scored; the detector is made for photos of faces, "
                     "so this verdict is weak evidence.")
    elif len(result["faces"]) > 1:
        lines.append(f"{len(result['faces'])} faces were found; the verdict follows the most fake one.")
    if len(result["models"]) > 1:
        lines.append(models_agreement(result))
    untrained = [name for name, model in result["models"].items() if not model["trained"]]
    if untrained:
        lines.append(f"**Untrained model{'s' if len(untrained) > 1 else ''} ({', '.join(untrained)}): "
                     "these scores are meaningless.**")
    if "provenance" in result:
        lines.append(f"**What the file says about itself** (read from its metadata, not part of the verdict): "
                     f"{result['provenance']['sentence']}")
    return "\n\n".join(lines)


def model_verdict_markdown(name: str, model: dict[str, Any], headline: bool) -> str:
    """One model's own verdict at its own threshold, its calibrated P(fake) and whether it is too close to call."""
    caveat = " · **inconclusive**" if model["inconclusive"] else ""
    caveat += "" if model["trained"] else " · **untrained: meaningless**"
    role = " (headline)" if headline else ""
    return (f"#### {name}{role}\n**{model['verdict']}** · P(fake) {percent(model['fake_probability'])} · "
            f"threshold {percent(model['threshold'])}{caveat}")


def data_uri(image: Image.Image, max_side: int = PREVIEW_MAX_SIDE) -> str:
    """A JPEG data URI of an image shrunk to `max_side` (display only; scores are computed on the original)."""
    image = image.copy()
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(image: Image.Image, caption: str, max_side: int) -> str:
    return (f'<figure style="margin:0 8px 8px 0;display:inline-block;vertical-align:top;width:{max_side}px;'
            f'max-width:100%"><img src="{data_uri(image, max_side)}" alt="{html.escape(caption)}" style="width:100%"/>'
            f'<figcaption style="font-size:0.85em">{html.escape(caption)}</figcaption></figure>')


def _number_tag(draw: ImageDraw.ImageDraw, text: str, corner: tuple[float, float], colour: tuple[int, int, int],
                font: ImageFont.ImageFont) -> None:
    """A face's number in white on a solid tag of its box's colour, above the box's corner where there is room,
    so that it reads on any photo."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 8, bottom - top + 6
    x, y = corner[0], corner[1] - height if corner[1] >= height else corner[1]
    draw.rectangle((x, y, x + width, y + height), fill=colour)
    draw.text((x + 4 - left, y + 3 - top), text, fill=(255, 255, 255), font=font)


def faces_html(image: Image.Image, result: dict[str, Any]) -> str:
    """The photo with a box around each detected face, numbered and coloured by the ensemble's verdict."""
    scale = min(1.0, PREVIEW_MAX_SIDE / max(image.size))
    shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(shown)
    font = ImageFont.load_default(size=18)
    for face in result["faces"]:
        x0, y0, x1, y1 = (v * scale for v in face["box"])
        colour = BOX_COLOURS[face["verdict"]]
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=3)
        _number_tag(draw, str(face["face"]), (x0, y0), colour, font)
    caption = (f"{len(result['faces'])} face(s) found; red: judged fake, green: judged real" if result["face_found"]
               else "no face found: the whole picture was scored")
    return _figure(shown, caption, PREVIEW_MAX_SIDE)


def explanations_html(explanations: list[RegionExplanation]) -> str:
    """Per region: where the model looked (Grad-CAM of its decision) and the region's frequency spectrum."""
    figures = []
    for index, explanation in enumerate(explanations):
        region = "whole image" if explanation.face is None else f"face {index + 1}"
        figures.append(_figure(explanation.looked, f"{region}: where the model looked "
                               f"(P(fake) {percent(explanation.fake_probability)})", 220))
        figures.append(_figure(explanation.spectrum, f"{region}: frequency spectrum", 220))
    return "<div>" + "".join(figures) + "</div>"


def notices_markdown(notices: list[str]) -> str:
    return "\n".join(f"- ⚠️ {notice}" for notice in notices)


CARD_PICTURE = re.compile(r"!\[([^\]]*)\]\(([^)/]+\.png)\)")


def comparison_markdown(models: list[dict[str, Any]]) -> str:
    """The Models tab's table: one row per model with its backbone, input, size, speed on this server, test figures
    and its recipe's worst left-out group."""
    lines = ["| model | backbone | input | size | ms per face on this server | test (its own test split): balanced "
             "acc. / AUC / real recall | worst left-out group: balanced acc. |", "|---|---|---|---|---|---|---|"]
    for model in models:
        lines.append(f"| **{model['name']}** | {_backbone(model)} | {_input(model)} | {_size(model)} | "
                     f"{_speed(model['speed'])} | {_test(model)} | {_worst_left_out(model)} |")
    return "\n".join(lines)


def _speed(speed: dict[str, Any]) -> str:
    if speed["basis"] == "served":
        return f"{speed['ms_per_face']:.0f} (median of the last {speed['images']} images scored)"
    return f"{speed['ms_per_face']:.0f} (timed at start-up, no photo scored yet)"


def _backbone(model: dict[str, Any]) -> str:
    return f"`{model['architecture']}`, {model['kind_label']}"


def _input(model: dict[str, Any]) -> str:
    crop = model["face_crop"]
    region = f"face, margin {crop['margin']:g}" if crop["enabled"] else "whole image"
    return f"{region}, {model['input_size']} px" + (", and its mirror image" if model["test_time_flip"] else "")


def _size(model: dict[str, Any]) -> str:
    weights = f"{model['weights_bytes'] / 2**20:.2f} MB"
    return (f"{model['parameters'] / 1e6:.1f} M parameters; " +
            (f"the head {weights}, the backbone shared" if model["frozen_backbone"] else weights))


def _test(model: dict[str, Any]) -> str:
    test = model["test"]
    if not test:
        return "not measured"
    return (f"{test['balanced_accuracy']:.3f} / {test['roc_auc']:.3f} / {test['real_recall']:.3f} "
            f"({test['n']} {test['split']} images of {test['sources']} sources, {test['setting']})")


def _worst_left_out(model: dict[str, Any]) -> str:
    record = model["leave_one_out"]
    if not record or not record["results"]:
        return "not measured"
    worst = min(record["results"], key=lambda result: result["balanced_accuracy"])
    return f"{worst['left_out']} ({worst['kind']}): {worst['balanced_accuracy']:.3f}"


def inline_pictures(markdown: str, pictures: dict[str, Path]) -> str:
    """A card's `![name](file.png)` links as inline pictures from the model folder; links to missing files go."""
    def replace(match: re.Match) -> str:
        path = pictures.get(match.group(2))
        if path is None:
            return ""
        return f"![{match.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode('ascii')})"

    return CARD_PICTURE.sub(replace, markdown)


def model_markdown(model: dict[str, Any], pictures: dict[str, Path] | None = None) -> str:
    """A model's facts in words (threshold, input, training data, terms) followed by its card, pictures inline."""
    data = model["training_data"]
    images = ", ".join(f"{count:,} {split}" for split, count in data["images"].items())
    facts = [("State", "trained" if model["trained"] else "**untrained: its scores are meaningless**"),
             ("Revision", model["revision"]), ("Decision threshold", f"P(fake) ≥ {model['threshold']:.3f}"),
             ("Backbone", _backbone(model)), ("Input", _input(model)),
             ("Preprocessing", model["preprocessing"]),
             ("Training data", ", ".join(data["sources"]) + (f" ({images} images)" if images else "")
              if data["sources"] else "not stated"),
             ("Held out of training", ", ".join(data["held_out"]) or "nothing"),
             ("Terms (licence)", model["license"] or "not stated")]
    parts = [f"## {model['name']}", "\n".join(f"- **{key}**: {value}" for key, value in facts)]
    if model["card"].strip():
        parts.append("### Model card\n\n" + inline_pictures(model["card"], pictures or {}))
    return "\n\n".join(parts)
