"""Writing multimodal samples: each modality's through its handler (``mmgen.modalities``)."""
from __future__ import annotations

import torch


def modality_of(value: torch.Tensor, options: dict) -> str | None:
    """The modality whose handler writes ``value``: "audio" for log-mels [n, n_mels, frames] with
    ``wave`` options, "text" for token ids with a ``vocabulary``, "image" for [n, 1 or 3, H, W];
    None for anything else (not written)."""
    if value.dim() == 4 and value.shape[1] in (1, 3):
        return "image"
    if "wave" in options and value.dim() == 3:
        return "audio"
    if "vocabulary" in options and not value.is_floating_point():
        return "text"
    return None


def write_samples(path_prefix: str, samples: dict, labels: torch.Tensor, options: dict) -> list[str]:
    """``samples[m]`` of every modality m, in label order, written by its modality's handler next to
    ``PREFIX-m``: ``PREFIX-m.png`` for images [n, C, H, W] in [0, 1], ``PREFIX-m.wav`` for log-mels
    with ``options[m]["wave"]``, ``PREFIX-m.txt`` ("label<TAB>text" lines) for tokens with
    ``options[m]["vocabulary"]``. Returns the paths written."""
    from mmgen import modalities
    written = []
    for m, value in samples.items():
        opts = options.get(m, {})
        kind = modality_of(value, opts)
        if kind is not None:
            written.append(modalities.get(kind).write(f"{path_prefix}-{m}", value, labels, **opts))
    return written


def write_model_samples(model, path_prefix: str, draw, data=None, n: int = 0, cross_generator=None) -> list[str]:
    """A multimodal model's sample files, in eval mode: ``draw()`` -> (samples, labels or None) written
    as ``PREFIX-<modality>``; with ``data`` (a multimodal dataset) also its first n examples
    (``PREFIX-real-*``) and, for each modality s, the others generated from s alone
    (``PREFIX-from_<s>-*``, ``model.generate(s, batch, generator=cross_generator)``). Returns the
    paths written."""
    was_training = model.training
    model.eval()
    try:
        samples, labels = draw()
        written = write_samples(path_prefix, samples, labels, model.options)
        if data is not None:
            batch = {k: v.to(model.device) for k, v in next(data.batches(n)).items()}
            labels = batch["y"].cpu() if "y" in batch else None
            written += write_samples(f"{path_prefix}-real", {m: batch[m] for m in model.names}, labels,
                                     model.options)
            for s in model.names if len(model.names) > 1 else ():
                written += write_samples(f"{path_prefix}-from_{s}",
                                         model.generate(s, batch, generator=cross_generator), labels, model.options)
    finally:
        model.train(was_training)
    return written
