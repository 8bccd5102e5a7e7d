"""``torch.utils.data`` glue: the (seed, epoch) batch order of every mmgen dataset, a batch sampler
of it, and adapters that give a plain torch ``Dataset`` or ``DataLoader`` the interface the trainer
uses (``batches(...)``, ``__len__``, ``name``).

- :func:`batch_order` / :class:`BatchPlan`: the index batches of one epoch, exactly those of
  :meth:`mmgen.data.Dataset.batches` (``torch.randperm`` with a generator seeded
  ``seed * 1_000_003 + epoch``; in order when not shuffled).
- :func:`as_batches(data)`: ``data`` itself when it has ``batches``; a :class:`MapDataset` around a
  map-style torch ``Dataset`` whose items are dicts of tensors (batched with ``default_collate`` by a
  ``DataLoader`` over a :class:`BatchPlan`: same order as the bundled datasets); a
  :class:`LoaderData` around a ``DataLoader`` (iterated once per epoch as it is, its sampler's
  ``set_epoch(epoch)`` called when it has one, ``start`` batches skipped on resume). A loader whose
  sampler is a ``DistributedSampler`` already yields this rank's share: ``per_rank`` is True and
  the trainer does not slice its batches again.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, default_collate
from torch.utils.data.distributed import DistributedSampler


def epoch_order(n: int, *, shuffle: bool, seed: int = 0, epoch: int = 0) -> torch.Tensor:
    """The example order of one epoch (that of :meth:`mmgen.data.Dataset.batches`)."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_order(n: int, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, start: int = 0) -> list[list[int]]:
    """The index batches ``start, start + 1, ...`` of one epoch of ``n`` examples."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = epoch_order(n, shuffle=shuffle, seed=seed, epoch=epoch).tolist()
    stop = n - n % batch_size if drop_last else n
    return [order[lo:lo + batch_size] for lo in range(0, stop, batch_size)][start:]


class BatchPlan(torch.utils.data.Sampler):
    """A batch sampler over a fixed list of index batches (see :func:`batch_order`)."""

    def __init__(self, batches: list[list[int]]):
        self.plan = batches

    def __iter__(self):
        return iter(self.plan)

    def __len__(self) -> int:
        return len(self.plan)


def batches_per_epoch(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else (n + batch_size - 1) // batch_size


def _check_loader_options(num_workers, pin_memory, where: str) -> None:
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"{where}: option num_workers must be an int >= 0, got {num_workers!r}")
    if not isinstance(pin_memory, bool):
        raise ValueError(f"{where}: option pin_memory must be true or false, got {pin_memory!r}")


class MapDataset:
    """A map-style torch ``Dataset`` of dict examples with :meth:`batches` in the (seed, epoch)
    order of the bundled datasets. Other attributes are those of the wrapped dataset."""

    per_rank = False

    def __init__(self, dataset, *, num_workers: int = 0, pin_memory: bool = False, name: str | None = None):
        _check_loader_options(num_workers, pin_memory, "dataset")
        self.dataset, self.num_workers, self.pin_memory = dataset, num_workers, pin_memory
        self.name = name or getattr(dataset, "name", type(dataset).__name__)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, key):  # levels, info, vocab ... of the wrapped dataset
        if key == "dataset":
            raise AttributeError(key)
        return getattr(self.dataset, key)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, start: int = 0) -> Iterator[dict]:
        plan = batch_order(len(self), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                           drop_last=drop_last, start=start)
        yield from DataLoader(self.dataset, batch_sampler=BatchPlan(plan), collate_fn=default_collate,
                              num_workers=self.num_workers, pin_memory=self.pin_memory)

    def batches_per_epoch(self, batch_size: int, drop_last: bool = False) -> int:
        return batches_per_epoch(len(self), batch_size, drop_last)


class LoaderData:
    """A ``DataLoader`` as training data: each epoch is one pass over the loader (``batch_size``,
    ``shuffle`` and ``drop_last`` are the loader's own). The pass of epoch e draws the loader's
    random numbers (its sampler's permutation, its worker seeds) from a generator seeded
    ``seed * 1_000_003 + e``, so it is the same in every process and after a resume; ``start``
    batches are skipped (loaded and dropped) on resume."""

    def __init__(self, loader: DataLoader, *, name: str | None = None):
        self.loader = loader
        self.name = name or getattr(loader.dataset, "name", type(loader.dataset).__name__)
        sampler = getattr(loader.batch_sampler, "sampler", None) or loader.sampler
        self.per_rank = isinstance(sampler, DistributedSampler)

    def __len__(self) -> int:
        try:
            return len(self.loader.dataset)
        except TypeError:  # an iterable dataset without a length: what one pass yields at most
            return len(self.loader) * (self.loader.batch_size or 1)

    def __getattr__(self, key):
        if key == "loader":
            raise AttributeError(key)
        return getattr(self.loader.dataset, key)

    def _set_epoch(self, epoch: int) -> None:
        for obj in (self.loader.sampler, self.loader.batch_sampler,
                    getattr(self.loader.batch_sampler, "sampler", None), self.loader.dataset):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)

    def batches(self, batch_size: int | None = None, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, start: int = 0) -> Iterator[dict]:
        self._set_epoch(epoch)
        with torch.random.fork_rng(devices=[]):  # the CPU generator only: CUDA streams are untouched
            torch.random.default_generator.manual_seed(seed * 1_000_003 + epoch)
            iterator = iter(self.loader)
            try:
                first = next(iterator)  # a single-process loader draws its permutation here
            except StopIteration:
                return
        for i, batch in enumerate(_chain(first, iterator)):
            if i >= start:
                yield batch

    def batches_per_epoch(self, batch_size: int | None = None, drop_last: bool = False) -> int:
        return len(self.loader)


def _chain(first, rest):
    yield first
    yield from rest


def as_batches(data, *, what: str = "data"):
    """``data`` with the batching interface the trainer uses (see the module docs); ``None`` stays None."""
    if data is None or hasattr(data, "batches"):
        return data
    if isinstance(data, DataLoader):
        return LoaderData(data)
    if isinstance(data, torch.utils.data.IterableDataset):
        raise TypeError(f"{what}: an IterableDataset has no random access; pass a DataLoader over it")
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return MapDataset(data)
    raise TypeError(f"{what} must be an mmgen dataset, a map-style torch.utils.data.Dataset of dict "
                    f"examples or a DataLoader of dict batches, got {type(data).__name__}")
