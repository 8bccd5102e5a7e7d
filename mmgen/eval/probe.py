"""Linear probes: how linearly readable attributes are from features (e.g. a model's latents).

:func:`linear_probe` standardizes the training features (their mean and std, std floored at 1e-6),
fits one multinomial logistic regression per attribute (torch, float64, weights seeded, full-batch
L-BFGS with strong Wolfe line search, ``iterations`` at most, L2 penalty ``l2`` on the weights) on
the rows whose value is known (>= 0), and returns the accuracy on the test features.
"""
from __future__ import annotations

import torch


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float = 1e-4,
                 iterations: int = 100, seed: int = 0) -> torch.nn.Linear:
    """Multinomial logistic regression of labels ``y`` [N] on features ``x`` [N, D] (float64)."""
    g = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(x.shape[1], num_classes).double()
    with torch.no_grad():
        linear.weight.copy_(0.01 * torch.randn(linear.weight.shape, generator=g, dtype=torch.float64))
        linear.bias.zero_()
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + l2 * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return linear.eval()


def linear_probe(train_x: torch.Tensor, train_targets: dict[str, torch.Tensor], test_x: torch.Tensor,
                 test_targets: dict[str, torch.Tensor], num_values: dict[str, int], *, seed: int = 0,
                 l2: float = 1e-4, iterations: int = 100) -> dict[str, float | None]:
    """Attribute -> test accuracy of a logistic regression fitted on (train_x, train_targets[attribute])
    (None where no test row is labelled); ``"all"`` (when several attributes): every attribute right."""
    train_x, test_x = train_x.detach().double().cpu(), test_x.detach().double().cpu()
    mean, std = train_x.mean(0), train_x.std(0).nan_to_num(1.0).clamp(min=1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    out, right = {}, []
    for name, targets in train_targets.items():
        targets, test = targets.cpu(), test_targets[name].cpu()
        known = targets >= 0
        if not known.any():
            out[name] = None
            continue
        linear = fit_logistic(train_x[known], targets[known], num_values[name], l2=l2, iterations=iterations, seed=seed)
        with torch.no_grad():
            correct = linear(test_x).argmax(1) == test
        labelled = test >= 0
        out[name] = correct[labelled].double().mean().item() if labelled.any() else None
        right.append(correct | ~labelled)
    if len(train_targets) > 1 and len(right) == len(train_targets):
        labelled = torch.stack([test_targets[n].cpu() >= 0 for n in train_targets], 1).all(1)
        out["all"] = torch.stack(right, 1).all(1)[labelled].double().mean().item() if labelled.any() else None
    return out


__all__ = ["fit_logistic", "linear_probe"]
