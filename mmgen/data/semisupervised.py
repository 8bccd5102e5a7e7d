"""Semi-supervised splits: keep the labels of only a few examples, mark the rest -1."""
from __future__ import annotations

import dataclasses

import torch

UNLABELLED = -1


def keep_labels(data, count: int, *, seed: int = 0):
    """A copy of ``data`` (a :class:`mmgen.data.Dataset`) in which ``count`` examples keep their
    label, the same number per class (chosen with a generator seeded ``seed``), and every other
    label is ``-1``. ``count`` must be a multiple of the number of classes."""
    if data.y is None:
        raise ValueError(f"{data.name}/{data.split} has no labels to keep")
    classes = torch.unique(data.y[data.y >= 0])
    if not isinstance(count, int) or count < 1 or count % len(classes):
        raise ValueError(f"labels={count!r}: the number of kept labels must be a positive multiple of the "
                         f"{len(classes)} classes of {data.name}/{data.split}")
    per_class = count // len(classes)
    generator = torch.Generator().manual_seed(seed)
    y = torch.full_like(data.y, UNLABELLED)
    for c in classes.tolist():
        members = torch.nonzero(data.y == c).flatten()
        if len(members) < per_class:
            raise ValueError(f"labels={count}: class {c} of {data.name}/{data.split} has only "
                             f"{len(members)} examples, fewer than {per_class}")
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        y[chosen] = c
    return data.with_labels(y) if hasattr(data, "with_labels") else dataclasses.replace(data, y=y)
