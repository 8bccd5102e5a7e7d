"""Captions -> condition vectors with a plugin text encoder, for text-conditioned models."""
from __future__ import annotations

import inspect

import torch
from torch import nn

from mmgen import plugins

__all__ = ["TextEmbedder", "make_tokenizer", "unknown_words_warning"]


def make_tokenizer(vocab):
    """The text modality's tokenizer of a token list, or of the caption words of a captioned dataset
    named by a string (``"shapes"``, ``"mnist-captions"``); None for None."""
    if vocab is None:
        return None
    from mmgen import modalities
    text = modalities.get("text")
    if isinstance(vocab, str):
        from mmgen.data import captions
        return text.tokenizer(text.vocabulary(captions.corpus(vocab)))
    return text.tokenizer(list(vocab))


def _token_embedder(model: nn.Module):
    """``model``'s :class:`TextEmbedder` if its encoder reads token ids, else None."""
    embedder = next((m for m in model.modules() if isinstance(m, TextEmbedder)), None)
    return embedder if embedder is not None and embedder.reads_tokens else None


def _unknown_words(tokenizer, caption: str) -> list[str]:
    """The words of ``caption`` that ``tokenizer`` reads as <unk>, in order, each once."""
    found = []
    for chunk in caption.split():
        if tokenizer.unk_id in tokenizer.encode(chunk, add_special=False):
            word = chunk.strip(".,;:!?\"'()")
            if word and word not in found:
                found.append(word)
    return found


def unknown_words_warning(model: nn.Module, caption: str, shown: int = 60) -> str | None:
    """What to tell a user whose ``caption`` has words that ``model``'s text encoder reads as <unk>:
    the words, what becomes of them and the words the model knows (the first ``shown`` in
    alphabetical order); None when every word is known or the encoder reads no token ids (a frozen
    sentence encoder takes any text)."""
    embedder = _token_embedder(model)
    unknown = [] if embedder is None else _unknown_words(embedder.tokenizer, caption)
    if not unknown:
        return None
    from mmgen import modalities
    known = sorted(w for w in embedder.tokenizer.vocab[len(modalities.get("text").specials):] if w.isalnum())
    words = ", ".join(known[:shown]) + (", ..." if len(known) > shown else "")
    return (f"the model's vocabulary has no {', '.join(repr(w) for w in unknown)} (in {caption!r}): read as "
            f"<unk>, the images follow the rest of the caption; its words: {words}")


class TextEmbedder(nn.Module):
    """``forward(captions: list[str]) -> [B, out_features]`` through a "text_encoder" component.

    A frozen encoder (no trainable parameter, e.g. ``text.minilm``) is kept out of the module tree,
    so its weights come from its package rather than the model's ``model.safetensors``, and is run
    once per distinct caption (cached on the CPU). A trainable one is a submodule; one that reads
    token ids (its constructor takes ``vocab_size``) gets it from ``tokenizer`` and the captions are
    tokenized first.

    Args:
        spec: component spec (``{"name": "text.gru", "out_features": 64}``) or a module.
        tokenizer: the text modality's tokenizer (:func:`make_tokenizer`), needed by encoders of token ids.
        what: how errors name this encoder.
    """

    def __init__(self, spec, tokenizer=None, what: str = "text_encoder"):
        super().__init__()
        from mmgen.models.base import component
        self.reads_tokens = False
        if isinstance(spec, dict):
            spec = dict(spec)
            factory = plugins.get_component("text_encoder", spec.get("name", "")).obj
            self.reads_tokens = "vocab_size" in inspect.signature(factory).parameters
            if self.reads_tokens and tokenizer is None:
                raise ValueError(f"{what} {spec.get('name')!r} reads token ids: give vocab (a list of "
                                 "tokens or a captioned dataset name such as 'shapes')")
            if self.reads_tokens:
                spec.setdefault("vocab_size", len(tokenizer))
        encoder, _ = component(spec, "text_encoder", what)
        self.out_features = getattr(encoder, "out_features", None)
        if not isinstance(self.out_features, int):
            raise ValueError(f"{what} {type(encoder).__name__} has no integer out_features")
        self.tokenizer = tokenizer
        self.frozen = not any(p.requires_grad for p in encoder.parameters())
        if self.frozen:
            self._frozen, self._cache = [encoder], {}
        else:
            self.encoder = encoder

    def forward(self, captions: list[str]) -> torch.Tensor:
        if isinstance(captions, str) or not captions or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions must be a non-empty list of strings, got {captions!r}")
        captions = list(captions)
        if not self.frozen:
            return self._encode(self.encoder, captions)
        missing = sorted(set(captions) - set(self._cache))
        with torch.no_grad():
            for lo in range(0, len(missing), 256):
                chunk = missing[lo:lo + 256]
                self._cache.update(zip(chunk, self._encode(self._frozen[0], chunk).float().cpu()))
        return torch.stack([self._cache[c] for c in captions])

    def _encode(self, encoder: nn.Module, captions: list[str]) -> torch.Tensor:
        if not self.reads_tokens:
            return encoder(captions)
        device = next(encoder.parameters()).device
        return encoder(self.tokenizer.batch_encode(captions).to(device))
