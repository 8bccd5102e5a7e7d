"""The MultiBench affect format (CMU-MOSI, CMU-MOSEI, ...): a pickled dict, as MultiBench's
``datasets/affect/get_data.py`` reads it::

    {"train": {"vision": [N, T, Fv], "audio": [N, T, Fa], "text": [N, T, Ft], "labels": [N, 1, 1], ...},
     "valid": {...}, "test": {...}}

(numpy arrays; sequences left-padded with zeros; sentiment labels in [-3, 3]; other keys such as
"id" are ignored). ``load_affect(path)`` gives mmgen splits "train" / "val" / "test" as
:class:`mmgen.data.multimodal.MultimodalDataset` with one aligned modality per feature sequence,
shaped features-first ``[N, F, T]`` so the audio plugin's sequence encoder and decoder
(``audio.mel`` with ``n_mels=F``, ``frames=T``) read any of them. Non-finite values (MOSI's audio has
-inf) become 0; with ``standardize=True`` every feature is centred and scaled by the train split's
mean and standard deviation. Labels: ``task="binary"`` gives 1 for sentiment >= 0 and 0 below
(MultiBench's accuracy with zeros counted positive), ``task="7class"`` rounds the sentiment,
clipped to [-3, 3], to the classes 0..6. The raw scores are kept in ``info["scores"]``.
"""
from __future__ import annotations

import functools
import pickle

import numpy as np
import torch

from mmgen.data.multimodal import MultimodalDataset

SPLITS = {"train": "train", "val": "valid", "test": "test"}
MODALITIES = ("vision", "audio", "text")
TASKS = ("binary", "7class")


def labels_for(scores: torch.Tensor, task: str) -> torch.Tensor:
    if task == "binary":
        return (scores >= 0).long()
    if task == "7class":
        return (scores.clamp(-3, 3).round() + 3).long()
    raise ValueError(f"unknown affect task {task!r}; accepted: {', '.join(TASKS)}")


def _features(split: dict, name: str, where: str) -> torch.Tensor:
    if name not in split:
        raise KeyError(f"{where} has no {name!r} array (keys: {sorted(split)})")
    array = np.asarray(split[name], dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"{where}[{name!r}] must be [N, T, F], got shape {array.shape}")
    array = np.where(np.isfinite(array), array, 0.0).astype(np.float32)
    return torch.from_numpy(array).transpose(1, 2).contiguous()


def load_affect(path: str, task: str = "binary", modalities=MODALITIES,
                standardize: bool = True) -> dict[str, MultimodalDataset]:
    """The three splits of the MultiBench affect pickle at ``path`` (see the module docs)."""
    return _load_affect(str(path), task, tuple(modalities), bool(standardize))


@functools.lru_cache(maxsize=4)
def _load_affect(path: str, task: str, modalities: tuple, standardize: bool) -> dict[str, MultimodalDataset]:
    if task not in TASKS:
        raise ValueError(f"unknown affect task {task!r}; accepted: {', '.join(TASKS)}")
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown or not modalities:
        raise ValueError(f"affect modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
    with open(path, "rb") as f:
        raw = pickle.load(f)
    missing = [key for key in SPLITS.values() if key not in raw]
    if not isinstance(raw, dict) or missing:
        raise ValueError(f"{path} is not in the MultiBench affect format: it needs the keys "
                         f"{list(SPLITS.values())}, missing {missing}")
    features, scores = {}, {}
    for split, key in SPLITS.items():
        where = f"{path}[{key!r}]"
        features[split] = {m: _features(raw[key], m, where) for m in modalities}
        if "labels" not in raw[key]:
            raise KeyError(f"{where} has no 'labels' array (keys: {sorted(raw[key])})")
        scores[split] = torch.as_tensor(np.asarray(raw[key]["labels"], dtype=np.float32)).reshape(-1)
        sizes = {m: v.shape[0] for m, v in features[split].items()} | {"labels": len(scores[split])}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"{where}: arrays disagree on the number of examples: {sizes}")
    if standardize:
        for m in modalities:
            train = features["train"][m]
            mean = train.mean(dim=(0, 2), keepdim=True)
            std = train.std(dim=(0, 2), keepdim=True).clamp(min=1e-6)
            for split in SPLITS:
                features[split][m] = (features[split][m] - mean) / std
    return {split: MultimodalDataset("multibench-affect", split, labels_for(scores[split], task),
                                     aligned=features[split],
                                     info={"scores": scores[split], "task": task, "path": path})
            for split in SPLITS}
