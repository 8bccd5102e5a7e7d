"""Log-mel spectrograms and their inversion to waveforms (InverseMelScale + Griffin-Lim)."""
from __future__ import annotations

import torch
import torchaudio
from torch import nn


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
