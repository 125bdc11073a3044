"""Linear probe, then fine-tuning (LP-FT; Kumar et al., ICLR 2022): before the first epoch, fit the classifier as a
logistic regression on the frozen pretrained network's pooled features. Fine-tuning from a zero head first pushes the
random-head gradient into every layer and bends the pretrained features towards the classes it sees; starting from a
head that already separates them bends them less, which the paper finds keeps accuracy on shifted data.

BatchNorm statistics are estimated afresh on the training batches first: training normalises with each batch's own
statistics, and a head fitted on features normalised with ImageNet's is confidently wrong on those."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.optim.swa_utils import update_bn

from hub_utils.model_folder import FAKE_INDEX, REAL_INDEX
from hub_utils.preprocess import model_input


@torch.no_grad()
def pooled_features(model: torch.nn.Module, loader: torch.utils.data.DataLoader, npr: bool,
                    channels_last: bool) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of one pass over `loader`: the network's pooled features in eval mode (BatchNorm with its
    running statistics), the input the classifier sees."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    features, labels = [], []
    for inputs, batch_labels in loader:
        inputs = model_input(inputs.to(device), npr)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        features.append(model.forward_head(model.forward_features(inputs), pre_logits=True).float().cpu().numpy())
        labels.append(batch_labels.cpu().numpy())
    model.train(was_training)
    return np.concatenate(features), np.concatenate(labels)


def fit_linear_probe(model: torch.nn.Module, loader: torch.utils.data.DataLoader, npr: bool = False,
                     channels_last: bool = False) -> float:
    """Re-estimate BatchNorm statistics on one pass of `loader`, then set the 2-class head to a logistic regression
    fitted on a second pass's pooled features; returns the probe's accuracy on those features. The two logits are
    +-half the regression's, so softmax gives its P(fake)."""
    update_bn((model_input(inputs, npr) for inputs, _ in loader), model,  # leaves the model's mode as it was
              device=next(model.parameters()).device)
    x, y = pooled_features(model, loader, npr, channels_last)
    if len(np.unique(y)) < 2:
        raise ValueError("the linear probe needs real and fake training images; the training split holds one class.")
    regression = LogisticRegression(max_iter=5000).fit(x, y == FAKE_INDEX)
    head = model.get_classifier()
    weight = torch.as_tensor(regression.coef_[0], dtype=head.weight.dtype, device=head.weight.device) / 2
    bias = float(regression.intercept_[0]) / 2
    with torch.no_grad():
        head.weight[FAKE_INDEX], head.weight[REAL_INDEX] = weight, -weight
        head.bias[FAKE_INDEX], head.bias[REAL_INDEX] = bias, -bias
    return float(regression.score(x, y == FAKE_INDEX))
