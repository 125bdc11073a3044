"""The last-block tuning bench: the low-rank residual starts as the frozen block and trains only itself."""
from __future__ import annotations

import numpy as np
import timm
import torch

from bench.last_block import TunedHead, summary_tokens, with_low_rank


def test_a_low_rank_block_starts_equal_to_the_frozen_block_and_leaves_it_untouched() -> None:
    block = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).blocks[-1].eval()
    before = {name: value.clone() for name, value in block.state_dict().items()}
    tuned = with_low_rank(block, rank=4).eval()
    x = torch.randn(2, 5, block.norm1.normalized_shape[0])
    assert torch.allclose(tuned(x), block(x), atol=1e-6)
    trainable = {name for name, p in tuned.named_parameters() if p.requires_grad}
    assert trainable == {f"{layer}.{ab}" for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2") for ab in "ab"}
    torch.optim.SGD([p for p in tuned.parameters() if p.requires_grad], lr=1.0).zero_grad()
    tuned(x).sum().backward()
    torch.optim.SGD([p for p in tuned.parameters() if p.requires_grad], lr=1.0).step()
    assert all(torch.equal(before[name], value) for name, value in block.state_dict().items())


def test_the_tuned_head_starts_as_the_linear_head_on_frozen_and_untuned_features() -> None:
    block = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).blocks[-1].eval()
    width = block.norm1.normalized_shape[0]
    block_input = torch.randn(3, 5, width)
    frozen = torch.randn(3, 6 * width)
    features = torch.cat([frozen, summary_tokens(block(block_input))], dim=1).detach()
    weight = np.random.default_rng(0).normal(size=features.shape[1]).astype(np.float32)
    model = TunedHead(block, 4, weight, 0.5, width).eval()
    expected = features @ torch.from_numpy(weight) + 0.5
    assert torch.allclose(model(frozen, block_input), expected, atol=1e-4)
