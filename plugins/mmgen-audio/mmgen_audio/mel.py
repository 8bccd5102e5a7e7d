"""Log-mel spectrograms, their inversion to waveforms (InverseMelScale + Griffin-Lim) and warping
(speed / vocal-tract-length style augmentation)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn


def _hz_to_mel(f):
    """HTK mel scale (torchaudio's default for MelSpectrogram)."""
    return 2595.0 * (torch.log10(1.0 + f / 700.0) if torch.is_tensor(f) else math.log10(1.0 + f / 700.0))


class LogMel(nn.Module):
    """Waveform [B, T] or [T] -> natural-log power mel spectrogram [B, n_mels, frames]."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, hop_length: int = 128, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None, floor: float = 1e-5):
        super().__init__()
        if f_max is not None and not f_min < f_max <= sample_rate / 2:
            raise ValueError(f"need f_min < f_max <= sample_rate / 2 = {sample_rate / 2}, "
                             f"got f_min={f_min}, f_max={f_max}")
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.f_min, self.f_max, self.floor = f_min, f_max, floor
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
            f_min=f_min, f_max=f_max, power=2.0)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() not in (1, 2) or not wave.is_floating_point():
            raise ValueError(f"expected a float waveform shaped [T] or [B, T], got {wave.dtype} "
                             f"of shape {tuple(wave.shape)}")
        batch = wave if wave.dim() == 2 else wave.unsqueeze(0)
        return torch.log(self.mel(batch).clamp(min=self.floor))

    def frames(self, samples: int) -> int:
        """Number of frames for a waveform of ``samples`` samples (centered STFT)."""
        return samples // self.hop_length + 1

    def warp(self, log_mel: torch.Tensor, freq_scale: torch.Tensor, time_scale: torch.Tensor) -> torch.Tensor:
        """Resample log-mels [B, n_mels, frames] of this front end as if every frequency had been
        multiplied by ``freq_scale[b]`` (exactly, through the mel scale: > 1 moves formants up) and
        time stretched by ``time_scale[b]`` about the centre frame (> 1: slower). Linear
        interpolation; bins or frames read from outside take the edge value."""
        if log_mel.dim() != 3 or log_mel.shape[1] != self.n_mels or log_mel.shape[2] < 2:
            raise ValueError(f"expected a log-mel shaped [B, {self.n_mels}, frames >= 2], got {tuple(log_mel.shape)}")
        batch, n_mels, frames = log_mel.shape
        dtype = log_mel.dtype
        freq_scale, time_scale = (torch.as_tensor(v, dtype=dtype).reshape(-1, 1).expand(batch, 1)
                                  for v in (freq_scale, time_scale))
        lo = _hz_to_mel(float(self.f_min))
        hi = _hz_to_mel(float(self.f_max if self.f_max is not None else self.sample_rate / 2))
        centres_mel = torch.linspace(lo, hi, n_mels + 2, dtype=dtype)[1:-1]
        centres = 700.0 * (torch.pow(10.0, centres_mel / 2595.0) - 1.0)
        source_bin = (_hz_to_mel(centres / freq_scale) - lo) / (hi - lo) * (n_mels + 1) - 1  # [B, n_mels]
        middle = (frames - 1) / 2
        source_frame = (torch.arange(frames, dtype=dtype) - middle) / time_scale + middle   # [B, frames]
        grid = torch.stack([(2 * source_frame / (frames - 1) - 1).unsqueeze(1).expand(batch, n_mels, frames),
                            (2 * source_bin / (n_mels - 1) - 1).unsqueeze(2).expand(batch, n_mels, frames)], 3)
        return F.grid_sample(log_mel.unsqueeze(1), grid, mode="bilinear", padding_mode="border",
                             align_corners=True).squeeze(1)

    def inverse(self, n_iter: int = 32) -> "MelToWave":
        """The Griffin-Lim inversion matching this front end's settings."""
        return MelToWave(self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.f_min,
                         self.f_max, n_iter)


class MelToWave(nn.Module):
    """Log power mel [B, n_mels, frames] -> waveform [B, T]: least-squares inverse mel filterbank,
    then Griffin-Lim phase recovery."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, hop_length: int = 128, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None, n_iter: int = 32):
        super().__init__()
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=n_fft // 2 + 1, n_mels=n_mels, sample_rate=sample_rate, f_min=f_min, f_max=f_max)
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft, n_iter=n_iter, hop_length=hop_length, power=2.0)
        self.n_mels = n_mels

    def forward(self, log_mel: torch.Tensor, length: int | None = None) -> torch.Tensor:
        if log_mel.dim() != 3 or log_mel.shape[1] != self.n_mels:
            raise ValueError(f"expected a log-mel shaped [B, {self.n_mels}, frames], got {tuple(log_mel.shape)}")
        power = self.inverse_mel(torch.exp(log_mel)).clamp(min=0.0)
        self.griffin_lim.length = length
        return self.griffin_lim(power)
