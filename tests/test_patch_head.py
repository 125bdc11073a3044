"""The patch-level evidence bench on token arrays whose answer is known."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.patch_head import fit_patch_head, patch_features, pooled_patch_logits


def test_patch_features_put_each_patch_s_blocks_side_by_side_without_the_class_token() -> None:
    # tokens[row, block, token, width] = 1000 * row + 100 * block + token (class token 0, patches 1..4)
    rows, blocks, tokens, width = 2, 3, 5, 2
    values = (1000 * np.arange(rows)[:, None, None, None] + 100 * np.arange(blocks)[None, :, None, None]
              + np.arange(tokens)[None, None, :, None] + np.zeros(width))
    array = values.astype(np.float32)
    every = patch_features(array, np.array([1]), [0, 2])
    assert every.shape == (4, 2 * width)
    assert every[:, 0].tolist() == [1001, 1002, 1003, 1004] and every[:, width].tolist() == [1201, 1202, 1203, 1204]
    chosen = patch_features(array, np.array([0, 1]), [2], patches=np.array([[3], [0]]))
    assert chosen[:, 0].tolist() == [204, 1201]  # patch index 3 of row 0, patch index 0 of row 1


def test_an_image_is_scored_by_the_mean_of_its_top_share_of_patch_logits() -> None:
    array = np.zeros((2, 1, 11, 1), np.float32)
    array[0, 0, 1:, 0] = np.arange(10)          # patch logits 0..9 with weight 1, bias 0
    array[1, 0, 1:, 0] = -np.arange(10)
    pooled = pooled_patch_logits(array, [0], np.ones(1, np.float32), 0.0, top=0.2)
    assert pooled.tolist() == [8.5, -0.5]


def test_the_patch_head_learns_a_signal_carried_by_every_patch_of_fake_images() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 60)
    array = rng.normal(size=(120, 2, 17, 4)).astype(np.float32)
    array[:, 1, 1:, 2] += 1.5 * labels[:, None]  # block position 1, dimension 2
    weight, bias = fit_patch_head(array, [1], np.arange(120), labels, np.ones(120), per_image=8, c=1.0)
    assert np.argmax(np.abs(weight)) == 2 and weight[2] > 0
    pooled = pooled_patch_logits(array, [1], weight, bias, top=0.25)
    assert roc_auc_score(labels, pooled) > 0.99
