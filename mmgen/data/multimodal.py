"""Multimodal datasets: several modalities per example, batched as ``{modality: tensor, ..., "y": labels}``
(and ``"attributes": [B, A]`` when the dataset has attribute labels; it is not a modality).

A modality is *aligned* (example i has its own value, e.g. the i-th image), *paired by label* (a
pool of values with labels; each example gets a pool member with its own label) or *chosen* (example
i has its own few alternatives, e.g. captions of the i-th image, and gets one of them). Pool members
and alternatives are drawn afresh for every epoch from (seed, epoch), so the same (seed, epoch)
always gives the same pairs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch


@dataclass
class MultimodalDataset:
    """One split. ``aligned[m]`` is ``[N, ...]``; ``pools[m]`` is ``(values [P, ...], labels [P])``;
    ``choices[m]`` is ``[N, C, ...]`` (C alternatives per example); ``y`` holds the N labels;
    ``transforms[m](x, generator)`` is applied per batch; ``info`` keeps metadata (e.g. which
    rendition each pool member is, ``attribute_names``); ``attributes`` (LongTensor ``[N, A]``, optional)
    holds attribute labels, batched as ``"attributes"``."""

    name: str
    split: str
    y: torch.Tensor
    aligned: dict[str, torch.Tensor] = field(default_factory=dict)
    pools: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    transforms: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    choices: dict[str, torch.Tensor] = field(default_factory=dict)
    attributes: torch.Tensor | None = None

    def __post_init__(self):
        n = len(self.y)
        for m, values in self.aligned.items():
            if values.shape[0] != n:
                raise ValueError(f"{self.name}/{self.split}: modality {m!r} has {values.shape[0]} examples, "
                                 f"labels have {n}")
        for m, values in self.choices.items():
            if values.dim() < 2 or values.shape[0] != n or values.shape[1] < 1:
                raise ValueError(f"{self.name}/{self.split}: choices {m!r} must be [{n}, C >= 1, ...], "
                                 f"got {list(values.shape)}")
        if self.attributes is not None and (self.attributes.dim() != 2 or self.attributes.shape[0] != n):
            raise ValueError(f"{self.name}/{self.split}: attributes must be [{n}, A], "
                             f"got {list(self.attributes.shape)}")
        for m, (values, labels) in self.pools.items():
            if values.shape[0] != labels.shape[0]:
                raise ValueError(f"{self.name}/{self.split}: pool {m!r} has {values.shape[0]} values but "
                                 f"{labels.shape[0]} labels")
            missing = sorted(set(self.y.unique().tolist()) - set(labels.unique().tolist()))
            if missing:
                raise ValueError(f"{self.name}/{self.split}: pool {m!r} has no member with label(s) {missing}")
        names = self.modalities
        if len(set(names)) != len(names) or {"y", "attributes"} & set(names):
            raise ValueError(f"modality names must be unique and not 'y' or 'attributes', got {list(names)}")

    @property
    def modalities(self) -> tuple[str, ...]:
        return (*self.aligned, *self.pools, *self.choices)

    def __len__(self) -> int:
        return len(self.y)

    def pairing(self, seed: int = 0, epoch: int = 0) -> dict[str, torch.Tensor]:
        """For each pooled modality, the pool index of every example: a uniform draw among the pool
        members with the example's label; for each chosen modality, the alternative of every example:
        a uniform draw among its C. Each from a generator seeded by (seed, epoch, modality)."""
        out = {}
        for k, (m, (_, labels)) in enumerate(self.pools.items()):
            gen = self._generator(seed, epoch, k)
            index = torch.empty(len(self.y), dtype=torch.long)
            for c in torch.unique(self.y).tolist():
                examples = torch.nonzero(self.y == c).flatten()
                members = torch.nonzero(labels == c).flatten()
                index[examples] = members[torch.randint(len(members), (len(examples),), generator=gen)]
            out[m] = index
        for k, (m, values) in enumerate(self.choices.items(), start=len(self.pools)):
            out[m] = torch.randint(values.shape[1], (len(self.y),), generator=self._generator(seed, epoch, k))
        return out

    @staticmethod
    def _generator(seed: int, epoch: int, k: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7_919 + k * 104_729 + 1)

    def take(self, idx: torch.Tensor, pairing: dict[str, torch.Tensor], generator=None) -> dict:
        """The examples ``idx`` as a batch dict, pooled and chosen modalities looked up through ``pairing``."""
        batch = {m: values[idx] for m, values in self.aligned.items()}
        batch.update({m: values[pairing[m][idx]] for m, (values, _) in self.pools.items()})
        batch.update({m: values[idx, pairing[m][idx]] for m, values in self.choices.items()})
        for m, transform in self.transforms.items():
            batch[m] = transform(batch[m], generator)
        batch["y"] = self.y[idx]
        if self.attributes is not None:
            batch["attributes"] = self.attributes[idx]
        return batch

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, start: int = 0) -> Iterator[dict]:
        """Yield ``{modality: tensor, ..., "y": labels[, "attributes"]}``; like :meth:`mmgen.data.Dataset.batches`,
        batch i of an epoch depends only on (seed, epoch), so resuming at ``start`` is exact."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
                 if shuffle else torch.arange(n))
        pairing = self.pairing(seed, epoch)
        stop = n - n % batch_size if drop_last else n
        for i, lo in enumerate(range(0, stop, batch_size)):
            if i < start:
                continue
            gen = torch.Generator().manual_seed(seed * 7919 + epoch * 104729 + i)
            yield self.take(order[lo:lo + batch_size], pairing, gen)

    def head(self, n: int) -> "MultimodalDataset":
        """The first ``n`` examples (aligned values, choices, attributes), with the same pools to pair
        from, transforms and info."""
        return dataclasses.replace(self, y=self.y[:n], aligned={m: v[:n] for m, v in self.aligned.items()},
                                   choices={m: v[:n] for m, v in self.choices.items()},
                                   attributes=None if self.attributes is None else self.attributes[:n])

    def batches_per_epoch(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else (n + batch_size - 1) // batch_size

    def data_info(self) -> dict:
        """Shapes for model shape inference: ``{"modalities": {modality: {...}}, "num_classes",
        "levels"}`` (see :func:`mmgen.data.datasets.describe_example`; audio's ``wave`` and text's
        ``vocabulary`` come from ``info``; ``num_classes`` from ``info["label_words"]`` or the labels)."""
        from mmgen.data.datasets import describe_example, num_classes
        examples = {m: v[0] if len(v) else v.new_zeros(v.shape[1:]) for m, v in self.aligned.items()}
        examples.update({m: v[0] for m, (v, _) in self.pools.items()})
        examples.update({m: v[0, 0] if len(v) else v.new_zeros(v.shape[2:]) for m, v in self.choices.items()})
        known = {"image", "audio", "text"}
        described = {m: describe_example(x, modality=m if m in known else None,
                                         vocabulary=self.info.get("vocabulary"), wave=self.info.get("wave"))
                     for m, x in examples.items()}
        words = self.info.get("label_words") or self.info.get("classes")
        return {"modalities": described, "num_classes": len(words) if words else num_classes(self.y),
                "levels": None}

    def example_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of one example of each modality."""
        shapes = {m: tuple(v.shape[1:]) for m, v in self.aligned.items()}
        shapes.update({m: tuple(v.shape[1:]) for m, (v, _) in self.pools.items()})
        shapes.update({m: tuple(v.shape[2:]) for m, v in self.choices.items()})
        return shapes
