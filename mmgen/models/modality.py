"""One modality of a multimodal model: its plugin encoder and decoder and how the decoder output is read.

Shared by MFM and the multimodal VAEs (MVAE, MMVAE, MoPoE). A modality spec is
``{"encoder": spec|module, "decoder": spec|module, "likelihood": ..., "weight": 1.0}`` plus the
optional ``"encoder_kind"``, ``"wave"``, ``"vocabulary"`` and ``"max_length"`` (see
:func:`build_modality`). A modality with ``"likelihood": "tokens"`` is a token sequence
(LongTensor [B, T], <bos> ... <eos> <pad>...) decoded by a teacher-forced language model such as
``text.gru`` (``decoder(h, tokens)`` -> next-token logits, ``decoder.generate(h)``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import mmgen
from mmgen.models.base import component
from mmgen.models.vae import encoder_input, make_likelihood

TOKENS = "tokens"
MODALITY_KEYS = ("encoder", "decoder", "likelihood", "weight", "encoder_kind", "wave", "vocabulary",
                 "max_length")


class Tokens:
    """Token sequences scored by a teacher-forced decoder: log p = -sum of next-token cross-entropies."""

    name = TOKENS

    def __init__(self, decoder, max_length: int):
        for attr in ("pad_id", "bos_id", "generate"):
            if not hasattr(decoder, attr):
                raise ValueError(f"a 'tokens' modality needs a decoder with {attr!r} (like text.gru), "
                                 f"got {type(decoder).__name__}")
        self.decoder, self.max_length = decoder, max_length

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(h, x)
        nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], ignore_index=self.decoder.pad_id,
                              reduction="none")
        return -nll.sum(1)

    def generate(self, h: torch.Tensor, generator=None, sample: bool = False) -> torch.Tensor:
        out = self.decoder.generate(h, max_length=self.max_length, temperature=1.0 if sample else 0.0,
                                    generator=generator)
        bos = torch.full((len(h), 1), self.decoder.bos_id, dtype=torch.long, device=h.device)
        return torch.cat([bos, out], 1)


class Values:
    """Any other data: the decoder output is read by a named likelihood."""

    def __init__(self, decoder, likelihood):
        self.decoder, self.likelihood = decoder, likelihood
        self.name = likelihood.name

    def log_prob(self, h, x):
        return self.likelihood.log_prob(self.decoder(h), x)

    def generate(self, h, generator=None, sample: bool = False):
        out = self.decoder(h)
        return self.likelihood.sample(out, generator=generator) if sample else self.likelihood.mean(out)


def encoder_kind(spec) -> str:
    """Plugins register sequence encoders as "text_encoder": accept either kind for a name."""
    if not isinstance(spec, dict) or "name" not in spec:
        return "encoder"
    for kind in ("encoder", "text_encoder"):
        if any(c.name == spec["name"] for c in mmgen.list_components(kind)):
            return kind
    return "encoder"  # the registry's error then names what exists


class Modality(NamedTuple):
    """A built modality: the plugin modules, the head reading the decoder output, the weight of its
    reconstruction in the training loss, the options for writing samples, and the spec to save."""

    encoder: nn.Module
    decoder: nn.Module
    head: Tokens | Values
    weight: float
    options: dict
    spec: dict


def build_modality(name: str, spec: dict, what: str) -> Modality:
    """Build modality ``name`` from its spec (``what``: the model, for error messages).

    ``likelihood``: "bernoulli", "gaussian", {"name": "categorical", "levels": L} or "tokens". The
    encoder needs an integer ``out_features``, the decoder ``in_features``. Optional: ``"weight"``
    (of its reconstruction, default 1), ``"wave"`` (the ``LogMel`` options of log-mel data, plus the
    ``mean`` and ``std`` it was standardized with: written samples become sound), ``"vocabulary"``
    (token strings: samples are written as text), ``"max_length"`` (generated tokens, default 32)."""
    if not isinstance(spec, dict) or not {"encoder", "decoder", "likelihood"} <= set(spec):
        raise ValueError(f"{what} modality {name!r} needs a dict with 'encoder', 'decoder' and "
                         f"'likelihood', got {spec!r}")
    unknown = sorted(set(spec) - set(MODALITY_KEYS))
    if unknown:
        raise ValueError(f"{what} modality {name!r} has unknown option(s) {unknown}; accepted: {list(MODALITY_KEYS)}")
    kind = spec.get("encoder_kind") or encoder_kind(spec["encoder"])
    encoder, enc_spec = component(spec["encoder"], kind, f"{what} {name} encoder")
    decoder, dec_spec = component(spec["decoder"], "decoder", f"{what} {name} decoder")
    for module, attr, role in ((encoder, "out_features", "encoder"), (decoder, "in_features", "decoder")):
        if not isinstance(getattr(module, attr, None), int):
            raise ValueError(f"{what} {name} {role} {type(module).__name__} has no integer attribute "
                             f"{attr!r} (see the component contract)")
    if spec["likelihood"] == TOKENS:
        head, lik_spec = Tokens(decoder, int(spec.get("max_length", 32))), TOKENS
    else:
        likelihood, lik_spec = make_likelihood(spec["likelihood"])
        head = Values(decoder, likelihood)
    weight = float(spec.get("weight", 1.0))
    if weight < 0:
        raise ValueError(f"{what} modality {name!r} weight must be >= 0, got {weight}")
    saved = {**{k: v for k, v in spec.items() if k not in ("encoder", "decoder", "likelihood", "encoder_kind")},
             "encoder": enc_spec, "decoder": dec_spec, "likelihood": lik_spec,
             **({"encoder_kind": spec["encoder_kind"]} if "encoder_kind" in spec else {})}
    options = {k: spec[k] for k in ("wave", "vocabulary") if k in spec}
    return Modality(encoder, decoder, head, weight, options, saved)


def check_subset(names: tuple, x: dict, modalities) -> tuple[str, ...]:
    """``modalities`` (a name, several, or None: those of ``names`` in batch ``x``) as a tuple, checked
    to be a non-empty subset of ``names`` that ``x`` holds."""
    if isinstance(modalities, str):
        modalities = (modalities,)
    subset = tuple(m for m in names if m in x) if modalities is None else tuple(modalities)
    bad = [m for m in subset if m not in names]
    if bad or not subset:
        raise ValueError(f"modalities {list(subset)} must be a non-empty subset of {list(names)}")
    missing = [m for m in subset if m not in x]
    if missing:
        raise ValueError(f"batch has no {missing}; it holds {sorted(x)}")
    return subset


def check_targets(names: tuple, targets, default) -> list[str]:
    """``targets`` (a name, several, or None: ``default``) as a list, checked to be a non-empty
    subset of ``names``."""
    targets = list(default) if targets is None else ([targets] if isinstance(targets, str) else list(targets))
    bad = [m for m in targets if m not in names]
    if bad or not targets:
        raise ValueError(f"targets {targets} must be a non-empty subset of {list(names)}")
    return targets


def encoder_view(head, value: torch.Tensor) -> torch.Tensor:
    """What an encoder sees: integer levels scaled to [0, 1], tokens and other data as they are."""
    return value if head.name == TOKENS else encoder_input(head.likelihood, value)


def infer_modality(name: str, spec, data: dict | None, what: str):
    """The modality spec with what the data entry gives filled in (see :mod:`mmgen.infer`): the
    encoder's and decoder's arguments, a categorical likelihood's ``levels``, ``wave``,
    ``vocabulary`` and, for "tokens", ``max_length`` = the data's sequence length - 1."""
    from mmgen.infer import fill_component, fill_decoder_params, fill_likelihood, fill_value
    if not isinstance(spec, dict) or not data:
        return spec
    spec, what = dict(spec), f"{what} modality {name!r}"
    if "encoder" in spec:
        kind = spec.get("encoder_kind") or encoder_kind(spec["encoder"])
        spec["encoder"] = fill_component(spec["encoder"], kind, data, f"{what} encoder")
    if "decoder" in spec:
        spec["decoder"] = fill_component(spec["decoder"], "decoder", data, f"{what} decoder")
    if spec.get("likelihood", TOKENS) != TOKENS:
        spec["likelihood"] = fill_likelihood(spec["likelihood"], data.get("levels"), what)
        if "decoder" in spec:
            spec["decoder"] = fill_decoder_params(spec["decoder"], spec["likelihood"], f"{what} decoder")
    fill_value(spec, "wave", data.get("wave"), what)
    fill_value(spec, "vocabulary", data.get("vocabulary"), what)
    if spec.get("likelihood") == TOKENS and isinstance(data.get("length"), int):
        fill_value(spec, "max_length", data["length"] - 1, what, "length - 1")
    return spec


def infer_modalities(config: dict, info: dict, what: str) -> dict:
    """``config["modalities"]`` with each modality's data entry filled in (:func:`infer_modality`)."""
    from mmgen.infer import entry
    if isinstance(config.get("modalities"), dict):
        config["modalities"] = {m: infer_modality(m, spec, entry(info, m), what)
                                for m, spec in config["modalities"].items()}
    return config
