"""Datasets from the user's own files: ``files.images``, ``files.audio``, ``files.text`` and
``files.manifest`` (``mmgen.data.load("files.manifest", "train", path=...)`` or a run config's
``"data": {"name": "files.manifest", "path": ...}``).

- ``files.images(path, size=None, channels=None)``: a folder of PNG/JPEG images. Like torchvision's
  ``ImageFolder``, each sub-folder is a class (sorted names -> labels 0..K-1, files found
  recursively); files directly in ``path`` are unlabelled (y = -1). Batches ``{"x": float [B, C, S,
  S] in [0, 1], "y"}``: the shorter side resized to ``size`` and the centre square cut; ``channels``
  1 (grey) or 3 (RGB). Unset, both are those of the first image (its shorter side).
- ``files.audio(path, sample_rate=16000, seconds=None)``: a folder of WAV/FLAC clips, class
  sub-folders as for images. Clips are mono, resampled to ``sample_rate`` and cut or padded with
  silence to ``seconds`` (unset: the first clip's duration); batches ``{"x": [B, n_mels, frames],
  "y"}`` of standardized log-mels, the audio plugin's ``features`` with ``wave_options(sample_rate)``
  (kept in ``info["wave"]`` so samples turn back into sound).
- ``files.text(path, min_count=1, length=None)``: a UTF-8 text file, one example per non-empty
  line; batches ``{"x": int64 [B, length], "y"}`` of ``<bos> ids <eos>`` padded with <pad>. The
  vocabulary (``info["vocabulary"]``, ``.vocab``) is built on the train split only (words seen
  ``min_count`` times there; others become <unk>); ``length`` unset: the longest train line's.
- ``files.manifest(path, modalities=None, ...)``: a JSONL (``.jsonl``, ``.json``, ``.ndjson``: one
  object per line) or CSV (``.csv``; ``.tsv`` tab-separated) file, one example per line, one column
  per modality: a file path (relative to the manifest's folder) for image and audio, the string
  itself for text; optional ``label`` (ints, -1 / empty = unknown, or strings: sorted class names
  -> 0..K-1 in ``info["classes"]``) and ``split`` (train / val / test) columns. A column is the
  modality ``modalities[column]`` (``{"photo": "image"}``) or, by default, the modality of its own
  name. A value may be missing (empty, null or absent): batches are ``{modality: tensor (zeros
  where missing), f"{modality}_mask": bool [B] (True = present), "y"}``, the mask always there. The
  image, audio and text options above apply to the manifest's columns. The captioned view, for
  text-conditioned models (a caption CVAE, the text-to-image GAN): ``x="image", captions="text"``
  keeps the rows holding both and gives batches ``{"x": images, "y", "captions": list[str]}``
  (the caption strings; their vocabulary, from the train split, is ``data_info()["modalities"]
  ["captions"]["vocabulary"]`` and ``info["vocabulary"]``; its ``"prompts"``, the first ten
  distinct train captions, are what a model built on it samples during training).

All of them: without a split column, the splits are a seeded random partition (``val``, ``test``
fractions, ``seed``); files and options are checked when the dataset is built (a missing file, a
bad line or an unknown column raise ``ValueError`` naming the file and line). Files are decoded by
the modality plugins (:func:`mmgen.modalities.get`) lazily through a ``torch.utils.data.DataLoader``
(``num_workers``, ``pin_memory``) and, with ``cache=True``, kept in memory once decoded: when every
example of a split has been seen, its batches are cut from in-memory tensors without a loader.
"""
from __future__ import annotations

import copy
import csv
import functools
import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader

from mmgen import modalities as modality_handlers
from mmgen.data.datasets import SPLITS
from mmgen.data.loader import BatchPlan, _check_loader_options, batch_order, batches_per_epoch

UNLABELLED = -1
MANIFEST_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": ",", ".tsv": "\t"}
RESERVED = ("label", "split")
PROMPTS = 10  # distinct train captions a captioned view offers as a model's default prompts


# --------------------------------------------------------------------------- columns and datasets

@dataclass
class Column:
    """One modality of a file dataset: per example a source (a path, a string, a row of ``values``)
    or None (missing); ``load(source)`` decodes one; ``shape``/``dtype`` of a decoded example."""

    modality: str
    sources: list
    load: Callable[[object], torch.Tensor]
    shape: tuple[int, ...]
    dtype: torch.dtype
    describe: dict = field(default_factory=dict)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.shape, dtype=self.dtype)


class FileDataset(torch.utils.data.Dataset):
    """One split of a file dataset: a map-style torch ``Dataset`` (``dataset[i]`` -> dict of one
    example) with the interface of :class:`mmgen.data.Dataset` (``name``, ``split``, ``y``,
    ``batches``, ``batches_per_epoch``, ``data_info``) and, for the manifest, that of
    :class:`mmgen.data.multimodal.MultimodalDataset` (``modalities``, ``info``)."""

    levels = None
    transform = None

    def __init__(self, name: str, split: str, columns: dict[str, Column], y: torch.Tensor, *,
                 origins: list[str], masks: bool, info: dict, num_workers: int = 0,
                 pin_memory: bool = False, cache: bool = True, captions: list[str] | None = None):
        self.name, self.split, self.columns, self.y = name, split, columns, y
        self.captions = captions  # the caption strings of a captioned view (batch field "captions")
        self.origins, self.masks, self.info = origins, masks, info
        self.num_workers, self.pin_memory, self.cache = num_workers, pin_memory, cache
        self._cache: dict[int, dict] = {}
        self._tensors: dict[str, torch.Tensor] | None = None
        single = None if masks else next(iter(columns.values())).modality
        self.vocab = info.get("vocabulary") if single == "text" else None  # token ids as "x"

    # -- interface of the bundled datasets
    def __len__(self) -> int:
        return len(self.y)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(c.modality for c in self.columns.values()) if self.masks else ()

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.columns.values())).shape

    def data_info(self) -> dict:
        classes = self.info.get("classes")
        known = self.y[self.y >= 0]
        num_classes = len(classes) if classes else (int(known.max()) + 1 if len(known) else None)
        described = {key: copy.deepcopy(c.describe) for key, c in self.columns.items()}
        if self.captions is not None:
            described["captions"] = copy.deepcopy(self.info["captions"])
        return {"modalities": described, "num_classes": num_classes, "levels": None}

    def with_labels(self, y: torch.Tensor) -> "FileDataset":
        """A copy with labels ``y`` (sharing the decoded examples), for semi-supervised splits."""
        other = copy.copy(self)
        other.y = y
        return other

    # -- torch Dataset
    def _example(self, i: int) -> dict:
        out = {}
        for key, column in self.columns.items():
            source = column.sources[i]
            if source is None:
                value = column.zeros()
            else:
                try:
                    value = column.load(source)
                except ValueError as exc:
                    raise ValueError(f"{self.origins[i]}: {exc}") from None
            out[key] = value
            if self.masks:
                out[f"{key}_mask"] = torch.tensor(source is not None)
        return out

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}/{self.split}: index {i} out of range for {len(self)} examples")
        i %= len(self)
        if self._tensors is not None:
            example = {k: v[i] for k, v in self._tensors.items()}
        elif i in self._cache:
            example = self._cache[i]
        else:
            example = self._example(i)
            if self.cache:
                self._cache[i] = example
        return {**example, "y": self.y[i], **({"captions": self.captions[i]} if self.captions is not None else {})}

    def _collate(self, indices: list[int]) -> dict:
        rows = [self[i] for i in indices]
        batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0] if k not in ("y", "captions")} if rows else {}
        batch["_index"] = torch.tensor(indices, dtype=torch.long)
        return batch

    # -- batches
    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, start: int = 0) -> Iterator[dict]:
        """``{"x": ..., "y": ...}`` (or ``{modality: ..., f"{modality}_mask": ..., "y": ...}``) batches
        in the (seed, epoch) order of :meth:`mmgen.data.Dataset.batches`."""
        plan = batch_order(len(self), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                           drop_last=drop_last, start=start)
        if self._tensors is not None:
            pin = self.pin_memory and torch.cuda.is_available()
            for indices in plan:
                idx = torch.tensor(indices, dtype=torch.long)
                batch = {k: v[idx] for k, v in self._tensors.items()}
                batch["y"] = self.y[idx]
                batch = {k: v.pin_memory() for k, v in batch.items()} if pin else batch
                yield self._with_captions(batch, indices)
            return
        # each plan entry is one list of indices; the loader's sampler yields them as single items
        # and the collate function receives that list (batch_size=None disables auto-batching)
        loader = DataLoader(_Indices(self), sampler=BatchPlan(plan), batch_size=None,
                            num_workers=self.num_workers, pin_memory=self.pin_memory)
        for batch in loader:
            index = batch.pop("_index")
            if self.cache and self.num_workers > 0:
                for j, i in enumerate(index.tolist()):
                    if i not in self._cache:
                        self._cache[i] = {k: v[j].clone() for k, v in batch.items()}
            batch["y"] = self.y[index]
            yield self._with_captions(batch, index.tolist())
            if self.cache and len(self._cache) == len(self) and self._tensors is None:
                self._materialize()
        if self.cache and self._tensors is None and plan:
            # an epoch without its last partial batch (drop_last) leaves up to a batch undecoded:
            # decode those here, so the next epoch is cut from memory instead of the loader
            missing = [i for i in range(len(self)) if i not in self._cache]
            if len(missing) <= len(plan[0]):
                for i in missing:
                    self._cache[i] = self._example(i)
                self._materialize()

    def _with_captions(self, batch: dict, indices: list[int]) -> dict:
        if self.captions is not None:
            batch["captions"] = [self.captions[i] for i in indices]
        return batch

    def _materialize(self) -> None:
        keys = list(self._cache[0]) if len(self) else []
        self._tensors = {k: torch.stack([self._cache[i][k] for i in range(len(self))]) for k in keys}
        self._cache = {}

    def batches_per_epoch(self, batch_size: int, drop_last: bool = False) -> int:
        return batches_per_epoch(len(self), batch_size, drop_last)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.split!r}, {len(self)} examples)"


class _Indices(torch.utils.data.Dataset):
    """``dataset[indices]`` -> the collated batch (the batch sampler hands whole index lists)."""

    def __init__(self, dataset: FileDataset):
        self.dataset = dataset

    def __getitem__(self, indices):
        return self.dataset._collate(indices)

    def __len__(self) -> int:
        return len(self.dataset)


# --------------------------------------------------------------------------- option checks, splits

def _check_int(value, name: str, where: str, low: int = 1, none: bool = True) -> None:
    if value is None and none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where}: option {name} must be an int >= {low}{' or null' if none else ''}, got {value!r}")


def _check_common(where: str, val, test, seed, num_workers, pin_memory, cache) -> None:
    for name, value in (("val", val), ("test", test)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{where}: option {name} must be a fraction in [0, 1), got {value!r}")
    if val + test >= 1:
        raise ValueError(f"{where}: options val + test must be < 1 (the rest is train), got {val} + {test}")
    _check_int(seed, "seed", where, low=0, none=False)
    _check_loader_options(num_workers, pin_memory, where)
    if not isinstance(cache, bool):
        raise ValueError(f"{where}: option cache must be true or false, got {cache!r}")


def _check_image_options(where: str, size, channels) -> None:
    _check_int(size, "size", where)
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ValueError(f"{where}: option channels must be 1, 3 or null, got {channels!r}")


def _check_audio_options(where: str, sample_rate, seconds) -> None:
    _check_int(sample_rate, "sample_rate", where, low=1000, none=False)
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
        raise ValueError(f"{where}: option seconds must be a number > 0 or null, got {seconds!r}")


def _check_text_options(where: str, min_count, length) -> None:
    _check_int(min_count, "min_count", where, none=False)
    _check_int(length, "length", where, low=2)


def random_splits(n: int, val: float, test: float, seed: int) -> dict[str, list[int]]:
    """Example indices of each split: a permutation seeded ``seed`` cut into train (the rest), val
    (``round(val * n)``) and test (``round(test * n)``); each split in file order."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val, n_test = round(val * n), round(test * n)
    sizes = {"train": n - n_val - n_test, "val": n_val, "test": n_test}
    out, lo = {}, 0
    for split in SPLITS:
        out[split] = sorted(perm[lo:lo + sizes[split]])
        lo += sizes[split]
    return out


# --------------------------------------------------------------------------- modality columns

def _handler(modality: str, where: str):
    try:
        return modality_handlers.get(modality)
    except Exception as exc:
        raise ValueError(f"{where}: {exc}") from None


def _probe(paths: list, origins: list, load: Callable):
    """``load`` of the first present file, a bad file named with its origin (file or manifest line)."""
    k = next(k for k, p in enumerate(paths) if p is not None)
    try:
        return load(paths[k])
    except ValueError as exc:
        raise ValueError(f"{origins[k]}: {exc}" if origins[k] != paths[k] else str(exc)) from None


def _image_column(where: str, paths: list, origins: list, size, channels) -> tuple[Callable, tuple, dict]:
    """The loader, example shape and description of image files (``size``/``channels`` of the first
    present image when unset; that image is decoded when the dataset is built, the others lazily)."""
    handler = _handler("image", where)
    image = _probe(paths, origins, handler.load)
    if size is None or channels is None:
        channels = channels or int(image.shape[0])
        size = size or int(min(image.shape[-2:]))

    load = functools.partial(_load_image, size=size, channels=channels)  # picklable for spawned workers
    return load, (channels, size, size), {"modality": "image", "channels": channels, "size": size,
                                          "shape": [channels, size, size]}


def _audio_column(where: str, paths: list, origins: list, sample_rate, seconds) -> tuple[Callable, tuple, dict, dict]:
    handler = _handler("audio", where)
    first = _probe(paths, origins, lambda p: handler.load(p, sample_rate=sample_rate))  # decoded at build
    if seconds is None:
        seconds = len(first) / sample_rate
    wave = handler.wave_options(sample_rate)
    samples = round(seconds * sample_rate)
    frames = handler.frames(samples, **wave)
    n_mels = wave["n_mels"]

    load = functools.partial(_load_audio, sample_rate=sample_rate, seconds=seconds, wave=wave)
    describe = {"modality": "audio", "n_mels": n_mels, "frames": frames, "wave": dict(wave),
                "seconds": seconds, "shape": [n_mels, frames]}
    return load, (n_mels, frames), describe, wave


def _text_columns(where: str, texts_by_split: dict[str, list], min_count, length):
    """Token ids of the (present) texts of each split, the train split's vocabulary, the length."""
    handler = _handler("text", where)
    train = [t for t in texts_by_split["train"] if t is not None]
    if not train:
        raise ValueError(f"{where}: the train split has no text to build a vocabulary from")
    vocabulary = handler.vocabulary(train, min_count=min_count)
    if length is None:
        length = int(handler.encode(train, vocabulary).shape[1])
    tokens = {}
    for split, texts in texts_by_split.items():
        present = [t for t in texts if t is not None]
        ids = (handler.encode(present, vocabulary, length=length) if present
               else torch.zeros(0, length, dtype=torch.long))
        rows, k = [], 0
        for t in texts:
            rows.append(None if t is None else ids[k])
            k += t is not None
        tokens[split] = rows
    describe = {"modality": "text", "vocab_size": len(vocabulary), "vocabulary": list(vocabulary),
                "length": length, "shape": [length]}
    return tokens, vocabulary, length, describe


def _identity(value):
    return value


def _load_image(path: str, *, size: int, channels: int) -> torch.Tensor:
    return modality_handlers.get("image").load(path, size=size, channels=channels)


def _load_audio(path: str, *, sample_rate: int, seconds: float, wave: dict) -> torch.Tensor:
    audio = modality_handlers.get("audio")
    clip = audio.load(path, sample_rate=sample_rate, seconds=seconds)
    return audio.features(clip.unsqueeze(0), **wave)[0]


# --------------------------------------------------------------------------- folders

def scan_folder(root: str, extensions: tuple[str, ...], where: str) -> tuple[list[str], list[int], list[str]]:
    """Files of a class folder tree: (paths, labels, class names), sorted; files directly in
    ``root`` get label -1; hidden files and folders and other suffixes are skipped."""
    if not os.path.isdir(root):
        raise ValueError(f"{where}: {root} is not a folder" + ("" if os.path.exists(root) else " (it does not exist)"))
    def wanted(name):
        return not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions
    entries = sorted(os.listdir(root))
    classes = [e for e in entries if not e.startswith(".") and os.path.isdir(os.path.join(root, e))]
    paths = [os.path.join(root, e) for e in entries if os.path.isfile(os.path.join(root, e)) and wanted(e)]
    labels = [UNLABELLED] * len(paths)
    for k, name in enumerate(classes):
        found = []
        for folder, dirs, files in os.walk(os.path.join(root, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(folder, f) for f in sorted(files) if wanted(f)]
        if not found:
            raise ValueError(f"{where}: class folder {os.path.join(root, name)} holds no "
                             f"{'/'.join(extensions)} file")
        paths += found
        labels += [k] * len(found)
    if not paths:
        raise ValueError(f"{where}: {root} holds no {'/'.join(extensions)} file")
    return paths, labels, classes


def _folder_dataset(kind: str, path, column_of, *, val, test, seed, num_workers, pin_memory, cache,
                    extra_info: dict | Callable = None) -> dict[str, FileDataset]:
    name = f"files.{kind}"
    where = f"{name} {path}"
    _check_common(where, val, test, seed, num_workers, pin_memory, cache)
    modality = {"images": "image", "audio": "audio"}[kind]
    paths, labels, classes = scan_folder(os.path.abspath(os.fspath(path)), _handler(modality, where).extensions, where)
    load, shape, describe, info = column_of(where, paths)
    info = {**info, "classes": classes or None, "label_words": classes or None, "path": os.path.abspath(path)}
    y = torch.tensor(labels, dtype=torch.long)
    out = {}
    for split, idx in random_splits(len(paths), val, test, seed).items():
        column = Column(modality, [paths[i] for i in idx], load, shape, torch.float32, describe)
        out[split] = FileDataset(name, split, {"x": column}, y[idx], origins=[paths[i] for i in idx],
                                 masks=False, info=info, num_workers=num_workers, pin_memory=pin_memory,
                                 cache=cache)
    return out


def images(path: str, size: int | None = None, channels: int | None = None, val: float = 0.1,
           test: float = 0.1, seed: int = 0, num_workers: int = 0, pin_memory: bool = False,
           cache: bool = True) -> dict[str, FileDataset]:
    """A folder of PNG/JPEG images, class sub-folders as labels (see the module docs)."""
    _check_image_options(f"files.images {path}", size, channels)

    def column(where, paths):
        load, shape, describe = _image_column(where, paths, paths, size, channels)
        return load, shape, describe, {}
    return _cached("files.images", path, locals_options(size=size, channels=channels, val=val, test=test, seed=seed,
                   num_workers=num_workers, pin_memory=pin_memory, cache=cache),
                   lambda: _folder_dataset("images", path, column, val=val, test=test, seed=seed,
                                           num_workers=num_workers, pin_memory=pin_memory, cache=cache))


def audio(path: str, sample_rate: int = 16000, seconds: float | None = None, val: float = 0.1,
          test: float = 0.1, seed: int = 0, num_workers: int = 0, pin_memory: bool = False,
          cache: bool = True) -> dict[str, FileDataset]:
    """A folder of WAV/FLAC clips as standardized log-mels, class sub-folders as labels (module docs)."""
    _check_audio_options(f"files.audio {path}", sample_rate, seconds)

    def column(where, paths):
        load, shape, describe, wave = _audio_column(where, paths, paths, sample_rate, seconds)
        return load, shape, describe, {"wave": wave, "seconds": describe["seconds"]}
    return _cached("files.audio", path, locals_options(sample_rate=sample_rate, seconds=seconds, val=val, test=test,
                   seed=seed, num_workers=num_workers, pin_memory=pin_memory, cache=cache),
                   lambda: _folder_dataset("audio", path, column, val=val, test=test, seed=seed,
                                           num_workers=num_workers, pin_memory=pin_memory, cache=cache))


def text(path: str, min_count: int = 1, length: int | None = None, val: float = 0.1, test: float = 0.1,
         seed: int = 0, num_workers: int = 0, pin_memory: bool = False, cache: bool = True,
         encoding: str = "utf-8") -> dict[str, FileDataset]:
    """A text file, one example per non-empty line, as token ids (see the module docs)."""
    where = f"files.text {path}"
    _check_text_options(where, min_count, length)
    _check_common(where, val, test, seed, num_workers, pin_memory, cache)

    def build():
        file = os.path.abspath(os.fspath(path))
        if not os.path.isfile(file):
            raise ValueError(f"{where}: " + ("it is a folder, not a text file" if os.path.isdir(file)
                                             else "the file does not exist"))
        try:
            with open(file, encoding=encoding) as f:
                lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
        except (UnicodeDecodeError, LookupError) as exc:
            raise ValueError(f"{where}: cannot be read as {encoding} text: {exc}") from None
        if not lines:
            raise ValueError(f"{where}: the file holds no text line")
        splits = random_splits(len(lines), val, test, seed)
        tokens, vocabulary, width, describe = _text_columns(
            where, {s: [lines[i][1] for i in idx] for s, idx in splits.items()}, min_count, length)
        info = {"vocabulary": vocabulary, "length": width, "classes": None, "label_words": None, "path": file}
        out = {}
        for split, idx in splits.items():
            column = Column("text", tokens[split], _identity, (width,), torch.long, describe)
            out[split] = FileDataset("files.text", split, {"x": column},
                                     torch.full((len(idx),), UNLABELLED, dtype=torch.long),
                                     origins=[f"{file} line {lines[i][0]}" for i in idx], masks=False, info=info,
                                     num_workers=num_workers, pin_memory=pin_memory, cache=cache)
        return out
    return _cached("files.text", path, locals_options(min_count=min_count, length=length, val=val, test=test,
                   seed=seed, num_workers=num_workers, pin_memory=pin_memory, cache=cache, encoding=encoding),
                   build)


# --------------------------------------------------------------------------- manifest

def read_manifest(path: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns, [(line number, row dict)]) of a JSONL or CSV manifest; empty strings are None."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in MANIFEST_FORMATS:
        raise ValueError(f"manifest {path}: unknown format {suffix or '(no suffix)'!r}; accepted: "
                         f"{', '.join(MANIFEST_FORMATS)}")
    if not os.path.isfile(path):
        raise ValueError(f"manifest {path} does not exist" if not os.path.exists(path)
                         else f"manifest {path} is not a file")
    rows, columns = [], {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        if MANIFEST_FORMATS[suffix] == "jsonl":
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"manifest {path} line {n}: not valid JSON ({exc.msg} at column "
                                     f"{exc.colno})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"manifest {path} line {n}: expected a JSON object "
                                     f"{{\"column\": value, ...}}, got {type(row).__name__}")
                columns.update(dict.fromkeys(row))
                rows.append((n, row))
        else:
            reader = csv.DictReader(f, delimiter=MANIFEST_FORMATS[suffix])
            if not reader.fieldnames:
                raise ValueError(f"manifest {path}: no header line (column names)")
            columns.update(dict.fromkeys(c.strip() for c in reader.fieldnames))
            for row in reader:
                if None in row:
                    raise ValueError(f"manifest {path} line {reader.line_num}: more fields than the header has "
                                     f"columns ({len(reader.fieldnames)})")
                if not any((v or "").strip() for v in row.values()):
                    continue
                rows.append((reader.line_num, {k.strip(): v for k, v in row.items()}))
    if not rows:
        raise ValueError(f"manifest {path} holds no example")
    for _, row in rows:
        for key, value in row.items():
            if value is None or (isinstance(value, str) and not value.strip()):
                row[key] = None
            elif isinstance(value, str):
                row[key] = value.strip()
    return list(columns), rows


def _labels(path: str, rows: list[tuple[int, dict]]) -> tuple[list[int], list[str] | None]:
    values = [(n, row.get("label")) for n, row in rows]
    present = [(n, v) for n, v in values if v is not None]
    def as_int(v):
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str) and re.fullmatch(r"-?\d+", v):
            return int(v)
        return None
    if all(as_int(v) is not None for _, v in present):
        labels = [UNLABELLED if v is None else as_int(v) for _, v in values]
        for (n, _), label in zip(values, labels):
            if label < UNLABELLED:
                raise ValueError(f"manifest {path} line {n}: label {label} must be >= 0 (or -1 / empty: unknown)")
        return labels, None
    for n, v in present:
        if not isinstance(v, str):
            raise ValueError(f"manifest {path} line {n}: label {v!r} must be an int or a class name (string), "
                             f"and all labels of the manifest of one kind")
    classes = sorted({v for _, v in present})
    index = {c: k for k, c in enumerate(classes)}
    return [UNLABELLED if v is None else index[v] for _, v in values], classes


def manifest(path: str, modalities: dict | None = None, size: int | None = None, channels: int | None = None,
             sample_rate: int = 16000, seconds: float | None = None, min_count: int = 1,
             length: int | None = None, val: float = 0.1, test: float = 0.1, seed: int = 0,
             num_workers: int = 0, pin_memory: bool = False, cache: bool = True, x: str | None = None,
             captions: str | None = None) -> dict[str, FileDataset]:
    """A JSONL/CSV manifest, one column per modality (see the module docs); ``x`` and ``captions``
    make the captioned view of it (for text-conditioned models)."""
    where = f"files.manifest {path}"
    _check_image_options(where, size, channels)
    _check_audio_options(where, sample_rate, seconds)
    _check_text_options(where, min_count, length)
    _check_common(where, val, test, seed, num_workers, pin_memory, cache)
    if modalities is not None and (not isinstance(modalities, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in modalities.items())):
        raise ValueError(f"{where}: option modalities must map column names to modality names, "
                         f"e.g. {{\"photo\": \"image\"}}, got {modalities!r}")
    for key, value in (("x", x), ("captions", captions)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: option {key} must name a modality of the manifest (e.g. 'image'), got {value!r}")
    if captions is not None and x is None:
        raise ValueError(f"{where}: option captions={captions!r} needs x (the modality the captions describe, "
                         "e.g. x='image')")
    options = locals_options(modalities=modalities, size=size, channels=channels, sample_rate=sample_rate,
                             seconds=seconds, min_count=min_count, length=length, val=val, test=test, seed=seed,
                             num_workers=num_workers, pin_memory=pin_memory, cache=cache, x=x, captions=captions)
    return _cached("files.manifest", path, options, lambda: _build_manifest(
        os.path.abspath(os.fspath(path)), dict(modalities or {}), size=size, channels=channels,
        sample_rate=sample_rate, seconds=seconds, min_count=min_count, length=length, val=val, test=test,
        seed=seed, num_workers=num_workers, pin_memory=pin_memory, cache=cache, view=(x, captions)))


def _build_manifest(path, mapping, *, size, channels, sample_rate, seconds, min_count, length, val, test, seed,
                    num_workers, pin_memory, cache, view=(None, None)) -> dict[str, FileDataset]:
    available = modality_handlers.available()
    columns, rows = read_manifest(path)
    for column, modality in mapping.items():
        if modality not in available:
            raise ValueError(f"files.manifest {path}: option modalities maps column {column!r} to {modality!r}, "
                             f"which is no registered modality; accepted: {available}")
        if column not in columns:
            raise ValueError(f"files.manifest {path}: option modalities names column {column!r}, which the "
                             f"manifest does not have; its columns: {columns}")
    chosen = {}  # column -> modality
    for column in columns:
        if column in RESERVED and column not in mapping:
            continue
        modality = mapping.get(column, column if column in available else None)
        if modality is None:
            raise ValueError(f"files.manifest {path}: column {column!r} names no modality; accepted: a "
                             f"registered modality name {available}, 'label', 'split', or a column mapped "
                             f"with the option modalities={{{column!r}: 'image'}}")
        chosen[column] = modality
    twice = sorted({m for m in chosen.values() if list(chosen.values()).count(m) > 1})
    if twice:
        raise ValueError(f"files.manifest {path}: several columns are modality {twice[0]!r} "
                         f"({[c for c, m in chosen.items() if m == twice[0]]}); one column per modality")
    if not chosen:
        raise ValueError(f"files.manifest {path}: no modality column; columns: {columns}")
    x, caption_modality = view
    if x is not None:  # the captioned view: one modality as "x", the rows that hold what it needs
        by_modality = {m: c for c, m in chosen.items()}
        for key, modality in (("x", x), ("captions", caption_modality)):
            if modality is not None and modality not in by_modality:
                raise ValueError(f"files.manifest {path}: option {key}={modality!r} names no modality of the "
                                 f"manifest; its modalities: {sorted(by_modality)}")
        if caption_modality is not None and caption_modality != "text":
            raise ValueError(f"files.manifest {path}: option captions={caption_modality!r} must be a text "
                             "modality ('text')")
        needed = [by_modality[m] for m in (x, caption_modality) if m is not None]
        rows = [(n, row) for n, row in rows if all(row.get(c) is not None for c in needed)]
        if not rows:
            raise ValueError(f"files.manifest {path}: no row holds {needed}")
        chosen = {by_modality[x]: x}
        caption_column = by_modality.get(caption_modality)
    folder = os.path.dirname(path)
    for n, row in rows:
        if all(row.get(c) is None for c in chosen):
            raise ValueError(f"files.manifest {path} line {n}: no modality value ({list(chosen)} all missing)")
        for column, modality in chosen.items():
            value = row.get(column)
            if value is None:
                continue
            if not isinstance(value, str):
                raise ValueError(f"files.manifest {path} line {n}: column {column!r} must hold a "
                                 f"{'string' if modality == 'text' else 'file path'}, got {value!r}")
            if modality != "text":
                file = os.path.normpath(os.path.join(folder, os.path.expanduser(value)))
                if not os.path.isfile(file):
                    raise ValueError(f"files.manifest {path} line {n}: {modality} file {value!r} "
                                     f"({file}) does not exist")
                row[column] = file
    # splits
    if "split" in columns and "split" not in mapping:
        bad = [(n, row.get("split")) for n, row in rows if row.get("split") not in SPLITS]
        if bad:
            raise ValueError(f"files.manifest {path} line {bad[0][0]}: split {bad[0][1]!r} must be one of "
                             f"{list(SPLITS)}")
        splits = {s: [i for i, (_, row) in enumerate(rows) if row["split"] == s] for s in SPLITS}
    else:
        splits = random_splits(len(rows), val, test, seed)
    labels, classes = _labels(path, rows) if "label" in columns and "label" not in mapping else ([UNLABELLED] * len(rows), None)
    y = torch.tensor(labels, dtype=torch.long)
    info = {"classes": classes, "label_words": classes, "path": path, "columns": dict(chosen)}
    loaders = {}  # modality -> (load, shape, dtype, describe, sources per split)
    origins = [f"manifest {path} line {n}" for n, _ in rows]
    for column, modality in chosen.items():
        values = [row.get(column) for _, row in rows]
        where = f"files.manifest {path} (column {column!r})"
        if modality == "image":
            load, shape, describe = _image_column(where, values, origins, size, channels)
            per_split = {s: [values[i] for i in idx] for s, idx in splits.items()}
            loaders[modality] = (load, shape, torch.float32, describe, per_split)
        elif modality == "audio":
            load, shape, describe, wave = _audio_column(where, values, origins, sample_rate, seconds)
            info["wave"] = wave
            per_split = {s: [values[i] for i in idx] for s, idx in splits.items()}
            loaders[modality] = (load, shape, torch.float32, describe, per_split)
        elif modality == "text":
            tokens, vocabulary, width, describe = _text_columns(
                where, {s: [values[i] for i in idx] for s, idx in splits.items()}, min_count, length)
            info["vocabulary"] = vocabulary
            loaders[modality] = (_identity, (width,), torch.long, describe, tokens)
        else:
            raise ValueError(f"{where}: modality {modality!r} has no manifest reader; accepted: image, audio, text")
    texts = None
    if x is not None and caption_column is not None:
        texts = {s: [rows[i][1][caption_column] for i in idx] for s, idx in splits.items()}
        where = f"files.manifest {path} (column {caption_column!r}, captions)"
        *_, describe = _text_columns(where, texts, min_count, length)
        describe["prompts"] = list(dict.fromkeys(texts["train"]))[:PROMPTS]  # what samples show in training
        info["captions"] = describe
        info["vocabulary"] = describe["vocabulary"]
    out = {}
    for split, idx in splits.items():
        cols = {("x" if x is not None else m): Column(m, per_split[split], load, shape, dtype, describe)
                for m, (load, shape, dtype, describe, per_split) in loaders.items()}
        out[split] = FileDataset("files.manifest", split, cols, y[idx],
                                 origins=[origins[i] for i in idx], masks=x is None,
                                 info=info, num_workers=num_workers, pin_memory=pin_memory, cache=cache,
                                 captions=None if texts is None else texts[split])
    return out


# --------------------------------------------------------------------------- build cache

_BUILT: "OrderedDict[tuple, dict]" = OrderedDict()
_KEEP = 8


def locals_options(**options) -> str:
    return json.dumps(options, sort_keys=True, default=str)


def _cached(name: str, path, options: str, build: Callable[[], dict]) -> dict:
    """The splits of one build, reused while the path (its modification time) and options are the
    same, so the train and val splits of a run share one vocabulary and one decoded cache."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name}: option path must be a file or folder path, got {path!r}")
    full = os.path.abspath(os.fspath(path))
    try:
        stamp = os.stat(full).st_mtime_ns
    except OSError:
        stamp = None
    key = (name, full, stamp, options)
    if key not in _BUILT:
        _BUILT[key] = build()
        while len(_BUILT) > _KEEP:
            _BUILT.popitem(last=False)
    _BUILT.move_to_end(key)
    return _BUILT[key]
