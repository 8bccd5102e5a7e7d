"""The dataset catalog: mmgen's own datasets by short name, the ones plugins register as
``dataset`` components, and :func:`load` over both.

A dataset is a factory ``factory(**options) -> {split: Dataset}``. mmgen's own are listed in
:data:`DATASETS` and registered as components ``<modality>.<name>`` (``image.digits``,
``text.lee``, ``multimodal.mnist-trimodal``) by mmgen's built-in plugin, so ``mmgen plugins list``
shows them and ``load`` takes either name; a plugin adds its own with
``registry.add("dataset", "myplugin.name", factory)``.
"""
from __future__ import annotations

import inspect

from mmgen.data.captions import mnist_captions, shapes
from mmgen.data import files
from mmgen.data.datasets import Dataset, digits, mnist
from mmgen.data.multibench import load_affect
from mmgen.data.semisupervised import keep_labels
from mmgen.data.text import lee
from mmgen.data.trimodal import mnist_trimodal

DATASETS = {"digits": digits, "mnist": mnist, "lee": lee, "mnist-captions": mnist_captions,
            "shapes": shapes, "mnist-trimodal": mnist_trimodal, "multibench-affect": load_affect,
            # the user's own files (mmgen.data.files): their names are already component names
            "files.images": files.images, "files.audio": files.audio, "files.text": files.text,
            "files.manifest": files.manifest}
MODALITY = {"digits": "image", "mnist": "image", "lee": "text", "mnist-captions": "image",
            "shapes": "image", "mnist-trimodal": "multimodal", "multibench-affect": "multimodal",
            "files.images": "image", "files.audio": "audio", "files.text": "text", "files.manifest": "multimodal"}


def component_names() -> dict[str, str]:
    """Short name -> component name of mmgen's own datasets (a name with a dot is its own
    component name: ``files.images``)."""
    return {name: name if "." in name else f"{MODALITY[name]}.{name}" for name in DATASETS}


def factory(name: str):
    """The factory of dataset ``name``: one of :data:`DATASETS`, or a registered ``dataset`` component."""
    own = {component: short for short, component in component_names().items()}
    if name in DATASETS or name in own:
        return DATASETS[own.get(name, name)]
    from mmgen import plugins
    if name in _registered():
        return plugins.get_component("dataset", name).obj
    raise ValueError(f"unknown dataset {name!r}; available: {available()}")


def _registered() -> list[str]:
    from mmgen import plugins
    return [c.name for c in plugins.list_components("dataset")]


def available() -> str:
    """The dataset names ``load`` accepts, for error messages."""
    own = sorted(component_names().values())
    others = [name for name in _registered() if name not in own]
    return (", ".join(DATASETS) + f" (or {', '.join(own)})"
            + (f"; registered by plugins: {', '.join(others)}" if others else ""))


def options(name: str) -> list[str]:
    """The keyword options ``load(name, ...)`` accepts."""
    return ["labels", *inspect.signature(factory(name)).parameters]


def splits(name: str, *, labels: int | None = None, **kwargs) -> list[str]:
    """The split names of dataset ``name`` with ``kwargs`` (``labels`` changes none)."""
    return list(factory(name)(**kwargs))


def load(name: str, split: str = "train", *, labels: int | None = None, **kwargs) -> Dataset:
    """``load("digits", "test")``, ``load("mnist", "train", binarize="dynamic")`` or a plugin's
    ``load("myplugin.name", "val")``. ``labels=100`` keeps only 100 labels of the train split
    (10 per class, seed 0; the others become -1) for semi-supervised training; val and test keep all
    their labels."""
    splits = factory(name)(**kwargs)
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; available: {', '.join(splits)} (dataset {name!r})")
    data = splits[split]
    return keep_labels(data, labels) if labels is not None and split == "train" else data
