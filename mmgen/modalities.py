"""What is specific to a modality, looked up by the modality's name.

The core never imports a plugin package. Decoding files, resizing, resampling, log-mel features,
tokenization and writing samples belong to the modality's plugin, which registers one handler
object per modality as the component kind ``"modality"`` under the modality's bare name::

    registry.add("modality", "audio", AudioModality, description="WAV/FLAC, log-mels, WAV samples")

``get("audio")`` returns the (one, cached) instance. Every handler has:

- ``name`` (``"image"``, ``"audio"``, ``"text"``) and ``extensions``: the file suffixes it reads
  (lower case, with the dot), e.g. ``(".png", ".jpg", ".jpeg")``;
- ``load(path, **options) -> Tensor | str``: one example from a file; a bad file raises
  ``ValueError`` naming the file (image: float ``[C, size, size]`` in [0, 1]; audio: float waveform
  ``[T]`` at ``sample_rate``; text: the string);
- ``write(path_prefix, values, labels=None, **info) -> str``: samples of this modality written
  next to ``path_prefix`` (image: ``PREFIX.png`` grid of ``[n, C, H, W]`` in [0, 1]; audio:
  ``PREFIX.wav`` of features ``[n, n_mels, frames]`` with ``info["wave"]``; text: ``PREFIX.txt``
  of token ids with ``info["vocabulary"]``), atomically; returns the path;
- ``html(path) -> str``: an HTML fragment showing a file of this modality, self-contained (media as
  data: URIs): image ``<img>``, audio ``<audio controls>``, text ``<pre>`` (``mmgen report``,
  ``mmgen demo``);
- ``to_tensorboard(writer, tag, path, step)``: a sample file logged to a TensorBoard
  ``SummaryWriter`` (``add_image`` / ``add_audio`` / ``add_text``; the trainer);
- ``example(source, **entry) -> Tensor``: one example as a dataset described by ``entry`` (its
  :mod:`mmgen.infer` data-info entry) holds it, from a file path (image: ``[C, size, size]``;
  audio: log-mels ``[n_mels, frames]``) or, where the handler has ``typed_input = True`` (text), a
  typed string (token ids ``[length]``): what ``mmgen demo`` feeds a model from an upload or a prompt;

and, by modality:

- audio: ``features(waves [B, T], **wave) -> [B, n_mels, frames]`` (standardized log-mels:
  ``(log_mel - wave["mean"]) / wave["std"]``, the other keys are ``LogMel`` options),
  ``to_wave(features, **wave) -> [B, T]`` (its inverse through Griffin-Lim),
  ``wave_options(sample_rate) -> dict`` (the default ``wave`` for clips at that rate),
  ``frames(samples, **wave) -> int`` and ``warp(features, freq_scale [B], time_scale [B], **wave)``
  (features resampled as if frequencies were scaled and time stretched per clip: augmentation);
- text: ``specials`` (the tokens every vocabulary starts with: <pad> <bos> <eos> <unk>, ids 0-3),
  ``vocabulary(texts, min_count=1) -> list[str]`` (specials first, then the words seen at least
  ``min_count`` times, most frequent first),
  ``encode(texts, vocabulary, length=None) -> LongTensor [B, T]`` (``<bos> ids <eos>``, padded with
  <pad> = 0, cut or padded to ``length``), ``decode(tokens, vocabulary) -> list[str]``,
  ``tokenizer(vocabulary, lowercase=True)`` (an object with ``vocab``, ``encode(text,
  add_special=True)``, ``decode(ids)``, ``batch_encode(texts, max_length=None)``, ``pad_id``,
  ``bos_id``, ``eos_id``, ``unk_id``, ``__len__``) and ``check_tokens(tokens, vocab_size, who)``
  (a ``ValueError`` naming ``who`` unless ``tokens`` is a LongTensor [B, T] of ids in range).

Modality-specific code in the core goes through these handlers: datasets (``mnist-trimodal``'s
log-mels and captions, ``lee``'s vocabulary), tokenizers of text-conditioned models, and MFM's
sample files (:func:`mmgen.models.mfm_samples.write_samples` calls ``write`` per modality).
"""
from __future__ import annotations

import os

from mmgen import plugins

KIND = "modality"
_cache: dict[tuple[int, str], object] = {}


def get(name: str):
    """The handler of modality ``name``; an error names the plugin to install when none is registered."""
    component = plugins.get_component(KIND, name)  # an unknown first-party one names its plugin
    key = (id(component), name)  # a re-registered handler (plugins.reset) is built again
    if key not in _cache:
        _cache[key] = component.obj()
    return _cache[key]


def available() -> list[str]:
    """The names of the registered modalities."""
    return [c.name for c in plugins.list_components(KIND)]


def for_file(path: str):
    """The handler whose ``extensions`` include the suffix of ``path`` (None when no registered
    modality reads such files)."""
    suffix = os.path.splitext(path)[1].lower()
    for name in available():
        handler = get(name)
        if suffix in getattr(handler, "extensions", ()):
            return handler
    return None


def has(name: str) -> bool:
    """Whether a plugin registers modality ``name`` (for tests and optional features)."""
    return name in available()
