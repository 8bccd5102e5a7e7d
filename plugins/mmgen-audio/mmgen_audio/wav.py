"""WAV files through soundfile (libsndfile)."""
from __future__ import annotations

import importlib
import os

import torch


def _soundfile():
    try:
        return importlib.import_module("soundfile")
    except (ImportError, OSError) as exc:  # OSError: libsndfile itself is missing
        raise ImportError("WAV I/O needs the package 'soundfile', a dependency of mmgen-audio: "
                          f"pip install soundfile (cause: {type(exc).__name__}: {exc})") from exc


def write_wav(path: str | os.PathLike, wave: torch.Tensor, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write a float waveform [T] or [channels, T] in [-1, 1] (values outside are clipped)."""
    if wave.dim() not in (1, 2) or not wave.is_floating_point():
        raise ValueError(f"expected a float waveform shaped [T] or [channels, T], got {wave.dtype} "
                         f"of shape {tuple(wave.shape)}")
    frames = wave.detach().clamp(-1.0, 1.0).to("cpu", torch.float32)
    frames = frames.unsqueeze(0) if frames.dim() == 1 else frames
    _soundfile().write(os.fspath(path), frames.T.numpy(), sample_rate, subtype=subtype)


def read_wav(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """(float32 waveform [channels, T] in [-1, 1], sample rate)."""
    data, sample_rate = _soundfile().read(os.fspath(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), sample_rate
