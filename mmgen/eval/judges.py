"""Judges of multimodal models: per modality, a classifier trained on real data.

A judge of modality m is a fresh copy of the model's encoder of m (every layer's parameters reset)
with one linear head per attribute m carries (:func:`attribute_spec`), trained on the real rows of
a split: Adam (lr 1e-3), ``steps`` batches of 64 (shuffled by ``seed``, last partial batch dropped),
the sum of the heads' cross-entropies over the rows whose attribute is known (>= 0); torch seeded
with ``seed`` before the copy is reset. It sees what the model's encoder sees
(``model.encoder_view(m, x)``). So a judge depends only on the encoder's architecture, the data,
``steps`` and ``seed``: models that share encoder specs get identical judges.

Measured attributes: a dataset whose attributes are functions of the data itself names a measure
per modality in ``info["attribute_measures"]`` (modality -> a name in
:data:`mmgen.data.captions.MEASURES`, e.g. mnist-trimodal's images: ``"mnist-digits"``, thickness,
slant and size). With ``measures=True`` (the default) the judge of such a modality predicts those
attributes by the measure, its cuts fitted on the same real rows (``Judge.measure``), and the
others (the digit, which the measure needs) by its heads; its features stay the encoder's. A
learned head only approximates the definition (docs/multimodal-metrics.md has the numbers).

Attributes: a dataset with ``info["attribute_names"]`` (batches carrying ``"attributes"`` [B, A])
gives each modality the attributes ``info["modality_attributes"][m]`` (default: all of them); a
dataset without them has one attribute, ``"label"``, the labels ``y``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class AttributeSpec:
    """What the judges classify: attribute ``names`` with ``num_values`` values each, the attributes of
    each modality (``per_modality``), and ``label``: the attribute every modality carries that stands
    for the label (``"label"`` without attributes; else the first shared attribute, None if none)."""

    names: list[str]
    num_values: list[int]
    per_modality: dict[str, list[str]]
    label: str | None
    from_y: bool  # True: the one attribute is "label", read from batch["y"]

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        """Attribute name -> LongTensor [B] of the batch's values (-1: unknown)."""
        if self.from_y:
            return {"label": batch["y"]}
        attributes = batch.get("attributes")
        if attributes is None:
            raise ValueError(f"the data names attributes {self.names} but its batches carry no 'attributes'")
        return {name: attributes[:, a] for a, name in enumerate(self.names)}

    def shared(self, modalities) -> list[str]:
        """The attributes every one of ``modalities`` carries, in the data's order."""
        return [a for a in self.names if all(a in self.per_modality[m] for m in modalities)]


def attribute_spec(data, modalities, num_classes: int | None = None) -> AttributeSpec:
    """The :class:`AttributeSpec` of a multimodal dataset for ``modalities``. Without attributes the
    number of labels comes from ``num_classes``, else ``info["label_words"]`` / ``info["classes"]``,
    else the largest label + 1."""
    info = getattr(data, "info", None) or {}
    names = info.get("attribute_names")
    modalities = list(modalities)
    if names:
        names = list(names)
        values = info.get("attribute_values")
        if values is None or len(values) != len(names):
            raise ValueError(f"{getattr(data, 'name', 'the data')}: info['attribute_values'] must list the values "
                             f"of each attribute {names}")
        carried = info.get("modality_attributes") or {}
        per_modality = {m: [a for a in names if a in carried.get(m, names)] for m in modalities}
        spec = AttributeSpec(names, [len(v) for v in values], per_modality, None, False)
        shared = spec.shared(modalities)
        spec.label = shared[0] if shared else None
        return spec
    words = info.get("label_words") or info.get("classes")
    if num_classes is None:
        num_classes = len(words) if words else int(data.y.max()) + 1
    return AttributeSpec(["label"], [int(num_classes)], {m: ["label"] for m in modalities}, "label", True)


class Judge(nn.Module):
    """An encoder and one linear head per attribute. Inputs are what the model's encoder sees
    (``model.encoder_view(m, x)``); ``features`` is the encoder's output (the penultimate layer)."""

    def __init__(self, encoder: nn.Module, attribute_names: list[str], num_values: list[int]):
        super().__init__()
        self.encoder = encoder
        self.attribute_names = list(attribute_names)
        self.num_features = int(encoder.out_features)
        self.heads = nn.ModuleList([nn.Linear(self.num_features, k) for k in num_values])
        self.measure = None  # set by train_judge for measured attributes (see the module docs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.features(x)
        return [head(h) for head in self.heads]

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """LongTensor [B, A]: the most likely value of each of the judge's attributes (the measured
        ones by ``measure``)."""
        predicted = torch.stack([logits.argmax(1) for logits in self(x)], 1)
        if self.measure is not None:
            needed = predicted[:, self.attribute_names.index(self.measure.needs)]
            for a, values in self.measure.predict(x, needed).items():
                if a in self.attribute_names:
                    predicted[:, self.attribute_names.index(a)] = values.to(predicted.device)
        return predicted


def present(batch: dict, m: str) -> torch.Tensor:
    """Rows of ``batch`` that hold modality ``m`` (all of them when the batch has no mask for it)."""
    mask = batch.get(f"{m}_mask")
    return torch.ones(len(batch["y"]), dtype=torch.bool, device=batch["y"].device) if mask is None else mask.bool()


def fit_measure(model, m: str, train_data, spec: AttributeSpec):
    """The measure ``train_data`` names for modality ``m`` (``info["attribute_measures"]``), fitted on
    its real rows of ``m`` whose needed attribute is known; None when it names none, or when ``m``
    does not carry both the measured attributes and the one the measure needs."""
    from mmgen.data.captions import MEASURES
    name = ((getattr(train_data, "info", None) or {}).get("attribute_measures") or {}).get(m)
    if name is None:
        return None
    if name not in MEASURES:
        raise ValueError(f"{getattr(train_data, 'name', 'the data')}: unknown attribute measure {name!r} for "
                         f"modality {m!r}; accepted: {', '.join(sorted(MEASURES))}")
    kind = MEASURES[name]
    carried = spec.per_modality[m]
    if kind.needs not in carried or not any(a in carried for a in kind.names):
        return None
    values, needed = [], []
    for batch in train_data.batches(256):
        known = spec.targets(batch)[kind.needs]
        rows = present(batch, m) & (known >= 0)
        values.append(model.encoder_view(m, batch[m][rows]).cpu())
        needed.append(known[rows].cpu())
    return kind.fit(torch.cat(values), torch.cat(needed))


def train_judge(model, m: str, train_data, steps: int, seed: int, device, spec: AttributeSpec | None = None,
                measures: bool = True) -> Judge:
    """The judge of modality ``m`` (see the module docs), trained on ``train_data``; ``measures``:
    measured attributes by the data's measure (the default) or by the heads."""
    if spec is None:
        spec = attribute_spec(train_data, model.names, getattr(model, "num_classes", None))
    attrs = spec.per_modality[m]
    if not attrs:
        raise ValueError(f"modality {m!r} carries no attribute to judge")
    torch.manual_seed(seed)
    encoder = copy.deepcopy(model.encoders[m])
    for layer in encoder.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    judge = Judge(encoder, attrs, [spec.num_values[spec.names.index(a)] for a in attrs]).to(device)
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    step, epoch = 0, 0
    while step < steps:
        seen = False
        for batch in train_data.batches(64, shuffle=True, seed=seed, epoch=epoch, drop_last=True):
            targets = spec.targets(batch)
            known = torch.stack([targets[a] >= 0 for a in attrs], 1)
            rows = present(batch, m) & known.any(1)
            if not rows.any():
                continue
            seen = True
            logits = judge(model.encoder_view(m, batch[m][rows].to(device)))
            loss = 0.0
            for a, lg in zip(attrs, logits):
                target, ok = targets[a][rows].to(device), known[rows, attrs.index(a)].to(device)
                if ok.any():
                    loss = loss + nn.functional.cross_entropy(lg[ok], target[ok])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step >= steps:
                break
        if not seen:
            raise ValueError(f"no labelled rows of modality {m!r} to train its judge on (in full batches of 64)")
        epoch += 1
    if measures:
        judge.measure = fit_measure(model, m, train_data, spec)
    return judge.eval()


def train_judges(model, train_data, *, steps: int = 300, seed: int = 0, device=None,
                 spec: AttributeSpec | None = None, measures: bool = True) -> dict[str, Judge]:
    """One :class:`Judge` per modality of ``model``, trained on the real ``train_data``. Reusable
    across models with the same encoder specs (pass it as ``evaluate(..., judges=...)``)."""
    device = device or model.device
    spec = spec or attribute_spec(train_data, model.names, getattr(model, "num_classes", None))
    with torch.enable_grad():
        return {m: train_judge(model, m, train_data, steps, seed, device, spec, measures) for m in model.names}


__all__ = ["AttributeSpec", "attribute_spec", "Judge", "fit_measure", "present", "train_judge", "train_judges"]
