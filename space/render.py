"""Turn the service's results into what the page shows: sentences, label values, Markdown and inline pictures.

Pictures derived from a visitor's photo are sent inline (data URIs inside HTML), so none of them is ever written
to Gradio's file cache on the server.
"""
from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from hub_utils.explain import RegionExplanation

PREVIEW_MAX_SIDE = 512
BOX_COLOURS = {"fake": (220, 38, 38), "real": (22, 163, 74)}


def percent(probability: float) -> str:
    return f"{probability:.1%}"


def verdict_markdown(result: dict[str, Any]) -> str:
    """The headline's verdict in plain words, with its confidence, the threshold, how many models agree and any
    caveat."""
    p, threshold, verdict = result["fake_probability"], result["threshold"], result["verdict"]
    confidence = p if verdict == "fake" else 1.0 - p
    who = "the models' mean" if result["headline"] == "ensemble" else f"`{result['headline']}`"
    if result["inconclusive"]:
        lines = [f"## Inconclusive (leaning {verdict})",
                 f"Estimated probability that this is fake ({who}): {percent(p)}, close to the threshold of "
                 f"{percent(threshold)}: the detector cannot tell either way. Do not rely on this result."]
    else:
        lines = [f"## Probably {verdict}",
                 f"Estimated probability that this is fake ({who}): {percent(p)} (threshold {percent(threshold)}), "
                 f"so the verdict **{verdict}** holds with {percent(confidence)} confidence."]
    if len(result["models"]) > 1:
        lines.append(f"{result['agreeing']} of {len(result['models'])} models say {verdict}.")
    if not result["face_found"]:
        lines.append("No face was found, so the whole picture was scored. The detector is made for photos of faces; "
                     "treat this score with extra care.")
    elif len(result["faces"]) > 1:
        lines.append(f"{len(result['faces'])} faces were found; the verdict follows the most fake one.")
    untrained = [name for name, model in result["models"].items() if not model["trained"]]
    if untrained:
        lines.append(f"**Untrained model{'s' if len(untrained) > 1 else ''} ({', '.join(untrained)}): "
                     "these scores are meaningless.**")
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


def faces_html(image: Image.Image, result: dict[str, Any]) -> str:
    """The photo with a box around each detected face, numbered and coloured by the ensemble's verdict."""
    scale = min(1.0, PREVIEW_MAX_SIDE / max(image.size))
    shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(shown)
    font = ImageFont.load_default(size=16)
    for face in result["faces"]:
        x0, y0, x1, y1 = (v * scale for v in face["box"])
        colour = BOX_COLOURS[face["verdict"]]
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=3)
        draw.text((x0 + 4, y0 + 2), str(face["face"] + 1), fill=colour, font=font)
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


def _table(header: tuple[str, str], rows: list[tuple[Any, Any]]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key} / ")
        else:
            rows.append((f"{prefix}{key}", f"{value:.4f}" if isinstance(value, float) else value))
    return rows


def _eval_results(model_index: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(dataset / metric, value) from a card's model-index."""
    rows = []
    for entry in model_index:
        for result in entry.get("results", []):
            dataset = result.get("dataset", {}).get("name", "?")
            rows += [(f"{dataset} / {m.get('name') or m.get('type')}", m.get("value"))
                     for m in result.get("metrics", [])]
    return rows


def model_markdown(model: dict[str, Any]) -> str:
    """A model's facts (threshold, training data, terms, headline metrics) followed by its card's Markdown body."""
    state = "trained" if model["trained"] else "**untrained: its scores are meaningless**"
    facts = [("revision", model["revision"]), ("architecture", model["architecture"]), ("state", state),
             ("decision threshold", model["threshold"]), ("preprocessing", model["preprocessing"]),
             ("model input", "NPR residual" if model["npr"] else "pixels"),
             ("mirror-image averaging", "on" if model["test_time_flip"] else "off"),
             ("face crop", json.dumps(model["face_crop"])),
             ("training data", json.dumps(model["training_data"]) if model["training_data"] else "not stated"),
             ("terms (license)", model["license"] or "not stated")]
    parts = [f"## {model['name']}", _table(("", ""), facts)]
    metrics = _flatten(model["metrics"]) or _eval_results(model["model_index"])
    parts.append("### Headline metrics\n\n" + (_table(("metric", "value"), metrics) if metrics
                                                 else "No metrics recorded yet."))
    if model["card"].strip():
        parts.append("### Model card\n\n" + model["card"])
    return "\n\n".join(parts)
