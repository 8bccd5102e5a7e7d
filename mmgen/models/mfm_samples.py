"""Writing multimodal samples: images as a PNG grid, log-mels as WAV (Griffin-Lim), tokens as text."""
from __future__ import annotations

import os

import torch

from mmgen.io import atomic_write_bytes, image_grid, save_png

GAP_SECONDS = 0.2


def log_mel_to_wave(features: torch.Tensor, wave: dict, n_iter: int = 32) -> torch.Tensor:
    """Waveforms [B, T] from features [B, n_mels, frames] = (log_mel - mean) / std, where log_mel
    is what ``LogMel(**options)`` computes; ``wave`` holds those options plus ``mean`` and ``std``
    (defaults 0 and 1)."""
    from mmgen_audio import LogMel
    options = dict(wave)
    mean, std = options.pop("mean", 0.0), options.pop("std", 1.0)
    front = LogMel(**options)
    length = (features.shape[-1] - 1) * front.hop_length
    return front.inverse(n_iter=n_iter)(features.float().cpu() * std + mean, length=length)


def decode_tokens(tokens: torch.Tensor, vocabulary: list[str]) -> list[str]:
    from mmgen_text import WordTokenizer
    tokenizer = WordTokenizer(list(vocabulary))
    return [tokenizer.decode(row.tolist()) for row in tokens]


def write_samples(path_prefix: str, samples: dict, labels: torch.Tensor, options: dict) -> list[str]:
    """``samples[m]`` of every modality m, in label order: ``PREFIX-m.png`` for images
    [n, C, H, W] in [0, 1], ``PREFIX-m.wav`` for log-mels with ``options[m]["wave"]``,
    ``PREFIX-m.txt`` ("label<TAB>text" lines) for tokens with ``options[m]["vocabulary"]``."""
    written = []
    for m, value in samples.items():
        opts = options.get(m, {})
        if value.dim() == 4 and value.shape[1] in (1, 3):
            path = f"{path_prefix}-{m}.png"
            save_png(image_grid(value.float().clamp(0, 1), nrow=10), path, scale=max(1, 56 // value.shape[-1]))
        elif "wave" in opts and value.dim() == 3:
            from mmgen_audio import write_wav
            waves = log_mel_to_wave(value, opts["wave"])
            gap = torch.zeros(int(GAP_SECONDS * opts["wave"]["sample_rate"]))
            audio = torch.cat([piece for w in waves for piece in (0.9 * w / w.abs().max().clamp(min=1e-6), gap)])
            path = f"{path_prefix}-{m}.wav"
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            write_wav(path, audio, opts["wave"]["sample_rate"])
        elif "vocabulary" in opts and not value.is_floating_point():
            path = f"{path_prefix}-{m}.txt"
            lines = [f"{int(label)}\t{text}" for label, text in zip(labels, decode_tokens(value, opts["vocabulary"]))]
            atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
        else:
            continue
        written.append(path)
    return written
