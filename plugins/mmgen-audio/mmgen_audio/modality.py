"""The audio modality: WAV/FLAC files through soundfile (mono, resampled with torchaudio, cropped or
padded), standardized log-mel features and their inversion, WAV samples."""
from __future__ import annotations

import html
import math
import os

import torch
import torchaudio

from mmgen_audio.mel import LogMel
from mmgen.io import data_uri
from mmgen_audio.wav import read_wav, write_wav

GAP_SECONDS = 0.2  # silence between the clips of a written sample file
# standardization of log-mels: (log_mel - mean) / std, close to speech statistics at these settings
LOG_MEL_MEAN, LOG_MEL_STD = -4.5, 4.5


class AudioModality:
    """``load(path, sample_rate=16000, seconds=None) -> float [T]``: the file's channels averaged,
    resampled to ``sample_rate`` and, with ``seconds``, cut (from the start) or padded with silence
    to ``round(seconds * sample_rate)`` samples."""

    name = "audio"
    extensions = (".wav", ".flac")

    def __init__(self):
        self._fronts: dict[tuple, LogMel] = {}

    def load(self, path: str, sample_rate: int = 16000, seconds: float | None = None) -> torch.Tensor:
        check_options(sample_rate, seconds)
        if not os.path.exists(path):
            raise ValueError(f"audio file {path} does not exist")
        try:
            wave, rate = read_wav(path)
        except ImportError:  # soundfile itself is missing: say so, not 'cannot read'
            raise
        except Exception as exc:  # soundfile raises its own LibsndfileError (a RuntimeError) and others
            raise ValueError(f"audio file {path} cannot be read as WAV/FLAC: {exc}") from None
        if wave.shape[1] == 0:
            raise ValueError(f"audio file {path} holds no samples")
        wave = wave.mean(0)
        if rate != sample_rate:
            try:
                wave = torchaudio.functional.resample(wave, rate, sample_rate)
            except Exception as exc:
                raise ValueError(f"audio file {path}: cannot resample {rate} Hz to {sample_rate} Hz: {exc}") from None
        if seconds is not None:
            length = round(seconds * sample_rate)
            wave = wave[:length] if len(wave) >= length else torch.cat([wave, wave.new_zeros(length - len(wave))])
        return wave.contiguous()

    @staticmethod
    def wave_options(sample_rate: int) -> dict:
        """The default feature settings for clips at ``sample_rate``: 32 mel bins, a hop of 1/80 s, a
        window of about 32 ms (a power of two), standardized with (-4.5, 4.5)."""
        check_options(sample_rate, None)
        n_fft = 2 ** max(6, round(math.log2(sample_rate * 0.032)))
        return {"sample_rate": sample_rate, "n_fft": n_fft, "hop_length": max(1, sample_rate // 80),
                "n_mels": 32, "floor": 1e-4, "mean": LOG_MEL_MEAN, "std": LOG_MEL_STD}

    def _front(self, wave: dict) -> tuple[LogMel, float, float]:
        """The ``LogMel`` front end of ``wave`` (built once per settings: its mel filterbank is
        the costly part), with the standardization constants."""
        options = dict(wave)
        mean, std = options.pop("mean", 0.0), options.pop("std", 1.0)
        key = tuple(sorted(options.items()))
        if key not in self._fronts:
            self._fronts[key] = LogMel(**options)
        return self._fronts[key], mean, std

    def features(self, waves: torch.Tensor, **wave) -> torch.Tensor:
        """Standardized log-mels [B, n_mels, frames] of waveforms [B, T] (or [T])."""
        front, mean, std = self._front(wave)
        return (front(waves) - mean) / std

    def warp(self, features: torch.Tensor, freq_scale, time_scale, **wave) -> torch.Tensor:
        """Standardized log-mels [B, n_mels, frames] resampled as if every frequency had been scaled
        by ``freq_scale[b]`` and time stretched by ``time_scale[b]`` (:meth:`LogMel.warp`; its
        interpolation is linear, so it commutes with the standardization)."""
        front, _, _ = self._front(wave)
        return front.warp(features, freq_scale, time_scale)

    def frames(self, samples: int, **wave) -> int:
        return samples // wave["hop_length"] + 1

    def to_wave(self, features: torch.Tensor, n_iter: int = 32, **wave) -> torch.Tensor:
        """Waveforms [B, T] from standardized log-mels [B, n_mels, frames] (Griffin-Lim)."""
        front, mean, std = self._front(wave)
        length = (features.shape[-1] - 1) * front.hop_length
        return front.inverse(n_iter=n_iter)(features.float().cpu() * std + mean, length=length)

    def write(self, path_prefix: str, values: torch.Tensor, labels=None, wave: dict | None = None, **info) -> str:
        """``PREFIX.wav``: the clips of features [n, n_mels, frames] one after the other, each
        normalized to 0.9 of full scale, ``GAP_SECONDS`` apart."""
        if wave is None or values.dim() != 3:
            raise ValueError(f"audio samples need features [n, n_mels, frames] and the wave options, got "
                             f"shape {tuple(values.shape)} and wave={wave!r}")
        waves = self.to_wave(values, **wave)
        gap = torch.zeros(int(GAP_SECONDS * wave["sample_rate"]))
        audio = torch.cat([piece for w in waves for piece in (0.9 * w / w.abs().max().clamp(min=1e-6), gap)])
        path = f"{path_prefix}.wav"
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{os.path.basename(path)}")
        write_wav(tmp, audio, wave["sample_rate"])  # soundfile writes by name: rename when complete
        os.replace(tmp, path)
        return path

    def html(self, path: str) -> str:
        """An ``<audio>`` player of the file, embedded as a data: URI."""
        mime = "audio/flac" if path.lower().endswith(".flac") else "audio/wav"
        return (f'<audio controls preload="auto" src="{data_uri(path, mime)}" '
                f'title="{html.escape(os.path.basename(path))}"></audio>')

    def to_tensorboard(self, writer, tag: str, path: str, step: int) -> None:
        wave, rate = read_wav(path)
        writer.add_audio(tag, wave.mean(0), step, sample_rate=rate)

    def example(self, source: str, frames: int, wave: dict, **entry) -> torch.Tensor:
        """One example from a WAV/FLAC file, as data described by ``entry`` holds it: standardized
        log-mels [n_mels, frames] of its first ``frames`` frames (shorter files padded with silence)."""
        rate = wave["sample_rate"]
        clip = self.load(source, sample_rate=rate, seconds=(frames - 1) * wave["hop_length"] / rate)
        return self.features(clip.unsqueeze(0), **wave)[0]


def check_options(sample_rate, seconds) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1000:
        raise ValueError(f"audio option sample_rate must be an int >= 1000 (Hz), got {sample_rate!r}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
        raise ValueError(f"audio option seconds must be a number > 0 or null, got {seconds!r}")
