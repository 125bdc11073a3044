"""Sharpness-aware minimisation (SAM; Foret et al., ICLR 2021): take each step with the gradient at the worst weights
in a small ball around the current ones, which favours flat minima, reported to carry over better to shifted data.

    loss.backward()                                  # the gradient g at w
    with worst_nearby_weights(model, rho=0.05):      # w + rho * g / |g|
        optimizer.zero_grad(); loss_fn(model(x)).backward()
    optimizer.step()                                 # at w, with the gradient taken at the perturbed weights
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def worst_nearby_weights(model: torch.nn.Module, rho: float) -> Iterator[None]:
    """Inside the block the weights sit at w + rho * g / |g|, from the gradients already computed (the first-order worst
    point of the ball of radius `rho`), and BatchNorm layers keep their running statistics; on exit both are as before."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not parameters:
        raise ValueError("no gradients: call backward() on the loss at the current weights first.")
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
    originals = [p.detach().clone() for p in parameters]
    batch_norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved_counts = [(m.momentum, m.num_batches_tracked.clone()) for m in batch_norms]
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(parameter.grad, alpha=rho / float(norm + 1e-12))
    for module in batch_norms:
        module.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: the second pass leaves them alone
    try:
        yield
    finally:
        with torch.no_grad():
            for parameter, original in zip(parameters, originals):
                parameter.copy_(original)  # exactly w again, not w + e - e
        for module, (momentum, tracked) in zip(batch_norms, saved_counts):
            module.momentum = momentum
            module.num_batches_tracked.copy_(tracked)
