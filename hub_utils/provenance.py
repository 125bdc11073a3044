"""What a file says about its own origin, read from its original bytes: C2PA Content Credentials, XMP, PNG text
chunks, EXIF and the invisible watermark of the Stable Diffusion reference scripts.

These are declarations shown beside the model's verdict, never mixed into it: most files carry none (social networks
and screenshots strip them), unsigned ones are forgeable, and a camera claim is not proof of a real photo. Damaged or
hostile metadata never raises: that mechanism reads as "unreadable". See docs/provenance.md.

    >>> read_provenance(Path("photo.jpg").read_bytes()).sentence
"""
from __future__ import annotations

import io
import json
import math
import re
from dataclasses import asdict, dataclass
from functools import cache, cached_property
from typing import Any, Literal

import c2pa
import cv2
import numpy as np
from defusedxml import ElementTree
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from .images import PHOTO_FORMATS

Mechanism = Literal["c2pa", "xmp", "png-text", "exif", "watermark"]
Claim = Literal["generated", "edited", "camera", "none", "unreadable"]

CLAIM_ORDER: tuple[Claim, ...] = ("generated", "edited", "camera", "none", "unreadable")  # strongest first
MECHANISM_ORDER: tuple[Mechanism, ...] = ("c2pa", "watermark", "xmp", "png-text", "exif")  # most trustworthy first
MECHANISM_NAMES = {"c2pa": "Content Credentials", "xmp": "XMP metadata", "png-text": "PNG text",
                   "exif": "EXIF", "watermark": "invisible watermark"}
# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/): "edited" means edited with a generator.
# Terms not listed (digitalArt, screenCapture, humanEdits, composite, ...) claim nothing about generation or capture.
SOURCE_TYPE_CLAIMS: dict[str, Claim] = {
    "trainedAlgorithmicMedia": "generated", "algorithmicMedia": "generated",
    "compositeWithTrainedAlgorithmicMedia": "edited", "compositeSynthetic": "edited",
    "algorithmicallyEnhanced": "edited",
    "digitalCapture": "camera", "computationalCapture": "camera", "negativeFilm": "camera", "positiveFilm": "camera",
    "print": "camera",
}
XMP_SOURCE_TYPE = "{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}DigitalSourceType"
XMP_CREATOR_TOOL = "{http://ns.adobe.com/xap/1.0/}CreatorTool"
RDF_RESOURCE = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}resource"
C2PA_BINDINGS = ("assertion.dataHash.", "assertion.boxesHash.", "assertion.bmffHash.", "assertion.collectionHash.")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_TEXT_TAGS = (271, 272, 305, 270)  # Make, Model, Software, ImageDescription
EXIF_IFD, EXIF_USER_COMMENT = 0x8769, 0x9286
GENERATOR_KEYS = ("parameters", "prompt", "workflow")
WEBUI_STEPS = re.compile(r"(?:^|\n)Steps: \d+")
WEBUI_MODEL = re.compile(r"(?:^|, )Model: ([^,\n]+)")

# The dwtDct watermark of invisible-watermark 0.2.0, as the reference Stable Diffusion (1.x/2.x) and SDXL pipelines
# embed it. It survives only pixels kept at their original size and chroma resolution: sizes that are not a multiple
# of 8 (the latent factor every output has), larger than any native output, and chroma-subsampled JPEG or lossy WebP
# are not decoded (measured in docs/provenance.md).
WATERMARKS = {"Stable Diffusion": np.unpackbits(np.frombuffer(b"StableDiffusionV1", np.uint8)).astype(bool),
              "Stable Diffusion XL": np.array([int(b) for b in f"{0xB3EC907BB19E:048b}"], bool)}
WATERMARK_MATCH = 0.875  # share of bits that must match; no real photo of ../shared/data came near (docs)
WATERMARK_MIN_PIXELS = 256 * 256  # the library refuses to embed in smaller images
WATERMARK_MAX_PIXELS = 1536 * 1024  # SDXL's native sizes reach 1.05 megapixels
WATERMARK_FORMATS = ("PNG", "WEBP", "TIFF", "BMP", "JPEG", "MPO")  # not GIF (a palette), not AVIF (4:2:0)
WATERMARK_SCALE = 36  # invisible-watermark's default quantisation step for the U channel
DETAIL_CHARS = 200


@dataclass(frozen=True)
class Finding:
    """One piece of evidence: the mechanism, what it claims, the tool (or camera) and model it names, and, for C2PA,
    who signed it, whether the signature validates and whether its hash binding matches these bytes."""

    mechanism: Mechanism
    claim: Claim
    tool: str = ""
    model: str = ""
    signer: str = ""
    detail: str = ""  # the IPTC term, the bits matched, or why it was unreadable
    signature_valid: bool | None = None
    bound_to_bytes: bool | None = None

    @property
    def evidence(self) -> str:
        """The mechanism in words, with how far it can be trusted, e.g. "Content Credentials, signature valid"."""
        name = MECHANISM_NAMES[self.mechanism]
        if self.mechanism == "watermark":
            return f"{name}, {self.detail}"
        if self.mechanism != "c2pa":
            return f"{name}, unsigned"
        signed = f"{name} signed by {self.signer}" if self.signer else name
        if not self.signature_valid:
            return f"{signed}, signature invalid"
        return f"{signed}, signature valid" + ("" if self.bound_to_bytes else ", but the file changed after signing")


@dataclass(frozen=True)
class Provenance:
    """Every finding in a file; `summary` is the strongest claim, from the most trustworthy mechanism on ties."""

    findings: tuple[Finding, ...] = ()

    @property
    def summary(self) -> Finding | None:
        return min(self.findings, default=None,
                   key=lambda f: (CLAIM_ORDER.index(f.claim), MECHANISM_ORDER.index(f.mechanism)))

    @property
    def claim(self) -> Claim:
        return self.summary.claim if self.summary else "none"

    @property
    def sentence(self) -> str:
        """One plain-English line for people."""
        top = self.summary
        if top is None:
            return "No provenance data in this file; most images have none, so this says nothing either way."
        model = f" and the model {top.model}" if top.model else ""
        if top.claim == "generated" and top.mechanism == "watermark":
            return f"The pixels carry the invisible watermark that {top.tool} adds to its images ({top.evidence})."
        if top.claim == "generated":
            return f"The file declares it was made with {top.tool or 'a generative AI tool'}{model} ({top.evidence})."
        if top.claim == "edited":
            where = f" in {top.tool}" if top.tool else ""
            return f"The file declares it was edited with generative AI{where} ({top.evidence})."
        if top.claim == "camera":
            camera = f"a camera, {top.tool}" if top.tool else "a camera"
            return (f"The file declares it came from {camera} ({top.evidence}); a declaration anyone can write, "
                    "not proof of a real photo.")
        if top.claim == "none":
            names = f"names {top.tool}" if top.tool else "carries provenance data"
            return f"The file {names} ({top.evidence}) but declares nothing about how the image was made."
        damaged = ", ".join(sorted({MECHANISM_NAMES[f.mechanism] for f in self.findings}))
        return f"The file's provenance data ({damaged}) could not be read; this says nothing either way."

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: the summary's fields, the sentence and every finding."""
        top = self.summary
        return {"claim": self.claim, "tool": top.tool if top else "", "mechanism": top.mechanism if top else "",
                "sentence": self.sentence, "findings": [asdict(f) for f in self.findings]}

    def to_columns(self) -> dict[str, str]:
        """Flat CSV columns for the summary; the C2PA flags are "true"/"false", empty for other mechanisms."""
        top = self.summary
        flag = {True: "true", False: "false", None: ""}
        return {"provenance_claim": self.claim, "provenance_tool": top.tool if top else "",
                "provenance_mechanism": top.mechanism if top else "",
                "provenance_signature_valid": flag[top.signature_valid if top else None],
                "provenance_bound_to_bytes": flag[top.bound_to_bytes if top else None]}


PROVENANCE_COLUMNS: tuple[str, ...] = tuple(Provenance().to_columns())  # the CSV's provenance columns


@dataclass(frozen=True)
class _File:
    data: bytes
    pixels: Image.Image | None  # the image as the caller already decoded it, if any

    @cached_property
    def image(self) -> Image.Image | None:
        """Opened lazily (headers and metadata only) in the formats the detector reads; None for bytes that are no
        such image. Damage raises."""
        try:
            return Image.open(io.BytesIO(self.data), formats=PHOTO_FORMATS)
        except UnidentifiedImageError:
            return None


def read_provenance(data: bytes, pixels: Image.Image | None = None) -> Provenance:
    """Read every provenance mechanism from a file's original bytes. `pixels`: the same image already decoded by the
    caller (same size), which spares decoding it again for the watermark. Never raises on the file's content."""
    file = _File(data, pixels)
    findings: list[Finding] = []
    for mechanism, read in READERS.items():
        try:
            findings.extend(read(file))
        except Exception as error:  # damage in one mechanism must leave the others, and scoring, untouched
            reason = f"{type(error).__name__.lstrip('_')}: {error}"[:DETAIL_CHARS]
            findings.append(Finding(mechanism, "unreadable", detail=reason))
    return Provenance(tuple(findings))


# ----------------------------------------------------------------------------------------------------------- C2PA

@cache
def _c2pa_context() -> c2pa.Context:
    """Reading never goes to the network: a file may point at a remote manifest or an OCSP responder."""
    return c2pa.Context(c2pa.Settings.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}))


def _read_c2pa(file: _File) -> list[Finding]:
    if b"c2pa" not in file.data:  # the manifest store's JUMBF label; skips the native reader for most files
        return []
    try:  # the format is detected from the bytes, so damage that stops Pillow does not stop this reader
        with c2pa.Reader(None, io.BytesIO(file.data), context=_c2pa_context()) as reader:
            store = json.loads(reader.json())
    except (c2pa.C2paError.ManifestNotFound, c2pa.C2paError.NotSupported):
        return []
    manifests = store.get("manifests") or {}
    active = manifests[store["active_manifest"]]
    actions = [action for manifest in [active, *(m for m in manifests.values() if m is not active)]  # + ingredients'
               for action in _c2pa_actions(manifest)]
    action = min(actions, default={}, key=lambda a: CLAIM_ORDER.index(_source_claim(a.get("digitalSourceType"))))
    term = _iptc_term(action.get("digitalSourceType"))
    failures, successes = _c2pa_codes(store)
    signature_valid = "claimSignature.validated" in successes and not any(
        code.startswith(("claimSignature.", "signingCredential.")) and code != "signingCredential.untrusted"
        for code in failures)
    bound = (any(code.startswith(C2PA_BINDINGS) and code.endswith(".match") for code in successes)
             and not any(code.startswith(C2PA_BINDINGS) for code in failures))
    info = active.get("signature_info") or {}
    return [Finding("c2pa", _source_claim(term), _agent_name(action.get("softwareAgent")) or _generator_name(active),
                    signer=info.get("issuer") or info.get("common_name") or "", detail=term,
                    signature_valid=signature_valid, bound_to_bytes=bound)]


def _iptc_term(value: Any) -> str:
    """`trainedAlgorithmicMedia` from `http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`."""
    return str(value or "").strip().rstrip("/").rsplit("/", 1)[-1]


def _source_claim(value: Any) -> Claim:
    return SOURCE_TYPE_CLAIMS.get(_iptc_term(value), "none")


def _c2pa_actions(manifest: dict) -> list[dict]:
    return [action for assertion in manifest.get("assertions") or []
            if str(assertion.get("label", "")).startswith("c2pa.actions")
            for action in (assertion.get("data") or {}).get("actions") or []]


def _c2pa_codes(store: dict) -> tuple[set[str], set[str]]:
    """The active manifest's failure and success codes (with the older flat `validation_status` list)."""
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = {s["code"] for s in results.get("failure") or []} | {
        s["code"] for s in store.get("validation_status") or []}
    return failures, {s["code"] for s in results.get("success") or []}


def _agent_name(agent: Any) -> str:
    return str(agent.get("name", "") if isinstance(agent, dict) else agent or "")


def _generator_name(manifest: dict) -> str:
    info = manifest.get("claim_generator_info") or [{}]
    return _agent_name(info[0]) or str(manifest.get("claim_generator") or "")


# ------------------------------------------------------------------------------------------- XMP, PNG text, EXIF

def _read_xmp(file: _File) -> list[Finding]:
    packet = file.image.info.get("xmp") if file.image else None
    if not packet:
        return []
    packet = packet.encode() if isinstance(packet, str) else packet
    term = tool = ""
    for element in ElementTree.fromstring(packet.strip(b"\x00 \r\n\t")).iter():
        for name, value in [(element.tag, element.text or element.get(RDF_RESOURCE)), *element.attrib.items()]:
            if name == XMP_SOURCE_TYPE and value and not term:
                term = _iptc_term(value)
            elif name == XMP_CREATOR_TOOL and value and value.strip() and not tool:
                tool = value.strip()
    if not term and not tool:
        return []
    return [Finding("xmp", _source_claim(term), tool, detail=term)]


def _generator_text(mechanism: Mechanism, key: str, text: str) -> Finding:
    """A generator's own parameters under one of `GENERATOR_KEYS`: SD WebUI's `parameters` (A1111, Forge and
    SD.Next share the format), ComfyUI's `prompt` or `workflow` JSON. Raises on text in no known format."""
    if key == "parameters":
        if not WEBUI_STEPS.search(text):
            raise ValueError("a 'parameters' text that is not in Stable Diffusion WebUI's format")
        model = WEBUI_MODEL.search(text)
        return Finding(mechanism, "generated", "Stable Diffusion WebUI", model.group(1).strip() if model else "")
    graph = json.loads(text)
    if not isinstance(graph, dict):
        raise ValueError(f"ComfyUI '{key}' is not a JSON object")
    checkpoints = [node["inputs"].get("ckpt_name") or node["inputs"].get("unet_name") for node in graph.values()
                   if isinstance(node, dict) and isinstance(node.get("inputs"), dict)]
    return Finding(mechanism, "generated", "ComfyUI", str(next((c for c in checkpoints if c), "")))


def _read_png_text(file: _File) -> list[Finding]:
    if not file.data.startswith(PNG_SIGNATURE) or file.image is None:
        return []
    found: dict[str, Finding] = {}
    for key in GENERATOR_KEYS:
        text = file.image.info.get(key)
        if isinstance(text, str):  # ComfyUI writes both `prompt` and `workflow`: the first names the model
            finding = _generator_text("png-text", key, text)
            found.setdefault(finding.tool, finding)
    return list(found.values())


def _read_exif(file: _File) -> list[Finding]:
    if file.image is None or (file.image.format == "PNG" and "exif" not in file.image.info):
        return []  # an eXIf chunk after a PNG's pixels would cost a full decode; writers put it before them
    exif = file.image.getexif()
    make, model, software, description = (str(exif.get(tag, "")).strip("\x00 ") for tag in EXIF_TEXT_TAGS)
    comfy = [text.split(":", 1) for text in (model, make, description) if text.startswith(("prompt:", "workflow:"))]
    if comfy:  # ComfyUI's WebP output: "prompt:{json}" in Model, "workflow:{json}" in Make
        return [_generator_text("exif", *comfy[0])]
    comment = _user_comment(exif.get_ifd(EXIF_IFD).get(EXIF_USER_COMMENT))
    if WEBUI_STEPS.search(comment):  # SD WebUI's JPEG/WebP output
        return [_generator_text("exif", "parameters", comment)]
    if make or model:
        camera = model if make and model.lower().startswith(make.lower()) else f"{make} {model}".strip()
        return [Finding("exif", "camera", camera, detail=f"software: {software}" if software else "")]
    return [Finding("exif", "none", software)] if software else []


def _user_comment(value: Any) -> str:
    """EXIF UserComment: an 8-byte character-code prefix, then the text."""
    if isinstance(value, str) or not value:
        return value or ""
    body = bytes(value[8:])
    if value.startswith(b"UNICODE"):
        return body.decode("utf-16-be" if body[:1] == b"\x00" else "utf-16-le", errors="replace")
    return body.decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------------------------------ watermark

def watermark_bits(bgr: np.ndarray, length: int) -> np.ndarray:
    """The bits invisible-watermark 0.2.0 reads with `WatermarkDecoder("bits", length).decode(bgr, "dwtDct")`."""
    return _bits(_block_votes(bgr, cv2.COLOR_BGR2YUV), length)


def watermark_matches(rgb: np.ndarray) -> dict[str, int]:
    """Bits matched per known watermark, the better of two channel orders: BGR, as the library expects, and RGB
    passed as BGR, as SDXL's reference detection script reads its images."""
    votes = [_block_votes(rgb, cv2.COLOR_RGB2YUV), _block_votes(rgb, cv2.COLOR_BGR2YUV)]
    return {tool: max(int((_bits(v, len(bits)) == bits).sum()) for v in votes) for tool, bits in WATERMARKS.items()}


def _block_votes(pixels: np.ndarray, conversion: int) -> np.ndarray:
    """The library's dwtDct arithmetic, vectorised: the Haar approximation of the U channel cut into 4x4 blocks; each
    block votes 1 where its largest value but the first, modulo the scale, lies in the upper half."""
    height, width = pixels.shape[0] // 4 * 4, pixels.shape[1] // 4 * 4
    u = cv2.cvtColor(pixels[:height, :width], conversion)[:, :, 1].astype(np.float64)
    half = math.sqrt(0.5)  # PyWavelets' Haar filter: columns first, then rows, for identical rounding
    rows = u[0::2] * half + u[1::2] * half
    approx = rows[:, 0::2] * half + rows[:, 1::2] * half
    n_rows, n_cols = approx.shape[0] // 4, approx.shape[1] // 4
    blocks = approx[:n_rows * 4, :n_cols * 4].reshape(n_rows, 4, n_cols, 4).swapaxes(1, 2).reshape(-1, 16)
    return blocks[:, 1:].max(axis=1) % WATERMARK_SCALE > 0.5 * WATERMARK_SCALE  # U >= 0: no magnitude needed


def _bits(votes: np.ndarray, length: int) -> np.ndarray:
    """Block n votes for bit n % length; a bit is set where the mean vote exceeds 127/255, as in the library."""
    bit = np.arange(len(votes)) % length
    return np.bincount(bit, weights=votes, minlength=length) / np.bincount(bit, minlength=length) * 255 > 127


def _read_watermark(file: _File) -> list[Finding]:
    image = file.image
    if image is None or image.format not in WATERMARK_FORMATS or image.width % 8 or image.height % 8 or not (
            WATERMARK_MIN_PIXELS <= image.width * image.height <= WATERMARK_MAX_PIXELS):
        return []
    if image.format in ("JPEG", "MPO") and JpegImagePlugin.get_sampling(image) != 0:  # chroma subsampling erases it
        return []
    if image.format == "WEBP" and not _webp_lossless(file.data):  # lossy WebP always subsamples chroma
        return []
    decoded = file.pixels if file.pixels is not None and file.pixels.size == image.size else image
    matches = watermark_matches(np.asarray(decoded.convert("RGB")))
    return [Finding("watermark", "generated", tool, detail=f"{matched} of {len(WATERMARKS[tool])} bits match")
            for tool, matched in matches.items() if matched >= WATERMARK_MATCH * len(WATERMARKS[tool])]


def _webp_lossless(data: bytes) -> bool:
    """Whether a still WebP's image chunk is VP8L (lossless) rather than VP8, walking the RIFF chunks."""
    offset = 12
    while offset + 8 <= len(data):
        fourcc, size = data[offset:offset + 4], int.from_bytes(data[offset + 4:offset + 8], "little")
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc == b"VP8L"
        offset += 8 + size + size % 2
    return False


READERS = {"c2pa": _read_c2pa, "xmp": _read_xmp, "png-text": _read_png_text, "exif": _read_exif,
           "watermark": _read_watermark}
