"""A detector on a frozen vision transformer: the class token (and the mean patch token) after chosen blocks, fed to a
linear head (UnivFD, Ojha et al. 2023; intermediate blocks as in RINE, Koutlis & Papadopoulos 2024).

The backbone is any timm ViT with a class token; its weights come from `backbone_weights` and never sit in a model
folder. The folder's `model.safetensors` holds the head alone, with the feature standardization and the calibration
temperature folded in, so `head(features(x))` gives the calibrated logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
import torch

TOKEN_KINDS = ("cls", "cls+patch")  # the class token alone, or beside the mean of the patch tokens


@dataclass(frozen=True)
class FrozenBackbone:
    """The `deepfake.backbone` section of a model folder: which weights, which blocks and tokens feed the head."""

    weights_sha256: str
    blocks: tuple[int, ...] = (6, 8, 10, 12)  # 1-based block numbers, as papers count them
    tokens: str = "cls+patch"

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if self.tokens not in TOKEN_KINDS:
            raise ValueError(f"backbone tokens must be one of {TOKEN_KINDS}, got {self.tokens!r}.")
        if not self.blocks or min(self.blocks) < 1 or list(self.blocks) != sorted(set(self.blocks)):
            raise ValueError(f"backbone blocks must be increasing block numbers from 1, got {list(self.blocks)}.")

    @property
    def tokens_per_block(self) -> int:
        return len(self.tokens.split("+"))


def block_tokens(backbone: torch.nn.Module, x: torch.Tensor, blocks: tuple[int, ...]) -> torch.Tensor:
    """(N, len(blocks), 2, C): after each block, its class token and the mean of its patch tokens (no final norm)."""
    outputs = backbone.forward_intermediates(x, indices=[b - 1 for b in blocks], return_prefix_tokens=True,
                                             norm=False, stop_early=True, output_fmt="NLC", intermediates_only=True)
    return torch.stack([torch.stack([prefix[:, 0], spatial.mean(dim=1)], dim=1) for spatial, prefix in outputs], dim=1)


def select_features(tokens: torch.Tensor, spec: FrozenBackbone, available: tuple[int, ...]) -> torch.Tensor:
    """The head's input from `block_tokens` output computed for `available` blocks: (N, F), blocks in order, each
    block's class token then (with `cls+patch`) its mean patch token."""
    index = [available.index(b) for b in spec.blocks]
    chosen = tokens[:, index, :spec.tokens_per_block]
    return chosen.reshape(len(tokens), -1)


class FrozenFeatureClassifier(torch.nn.Module):
    """Frozen ViT -> chosen block tokens -> linear head with two outputs (real, fake)."""

    def __init__(self, backbone: torch.nn.Module, spec: FrozenBackbone, num_classes: int = 2) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_intermediates") or getattr(backbone, "cls_token", None) is None:
            raise ValueError(f"{type(backbone).__name__} is not a timm vision transformer with a class token.")
        if max(spec.blocks) > len(backbone.blocks):
            raise ValueError(f"backbone has {len(backbone.blocks)} blocks; cannot take block {max(spec.blocks)}.")
        self.backbone = backbone.eval().requires_grad_(False)
        self.spec = spec
        self.head = torch.nn.Linear(len(spec.blocks) * spec.tokens_per_block * backbone.embed_dim, num_classes)
        self.pretrained_cfg = backbone.pretrained_cfg

    def train(self, mode: bool = True) -> FrozenFeatureClassifier:
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return select_features(block_tokens(self.backbone, x, self.spec.blocks), self.spec, self.spec.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def get_classifier(self) -> torch.nn.Linear:
        return self.head

    def head_state(self) -> dict[str, torch.Tensor]:
        """What a model folder stores: the head's weights only."""
        return {f"head.{name}": value.detach().contiguous() for name, value in self.head.state_dict().items()}


def create_frozen_backbone(architecture: str, pretrained_cfg: dict) -> torch.nn.Module:
    """The timm backbone without weights or classifier (its own head, such as CLIP's projection, is not used), with
    the folder's preprocessing settings."""
    return timm.create_model(architecture, pretrained=False, num_classes=0, pretrained_cfg_overlay=pretrained_cfg)
