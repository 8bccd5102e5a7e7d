"""Synthesize the spoken digits of the ``mnist-trimodal`` dataset (run once; the result is committed).

    apt-get install -y flite espeak-ng        # only this script needs them, not mmgen or its tests
    python scripts/synthesize_speech.py       # writes mmgen/data/files/spoken_digits.npz

Every digit word ("zero" .. "nine") is rendered by the same list of *renditions*. A rendition is a
voice (engine + voice name, e.g. ``flite/awb`` or ``espeak-ng/en-gb-scotland+m3``) with a speaking
rate and a pitch. flite contributes its five voices at two settings each (duration stretch and
mean F0); espeak-ng contributes base English voices combined with voice variants, each at a rate
(words per minute, ``-s``) and pitch (``-p``) picked from fixed cycles, so the list is the same
on every run. Each voice occurs exactly once (one setting per espeak-ng voice; flite's two settings
of a voice share its name), so a split by voice is a split by rendition.

Each clip is resampled to 8 kHz, trimmed to the span louder than 1/50 of its peak (plus 30 ms on
either side), peak-normalized to 0.9, centred in a fixed window of 0.8 s (longer clips are cut to
the window), and stored as 8-bit mu-law codes (ITU G.711 companding, mu = 255). The archive holds

    codes      uint8 [renditions * 10, 6400]   mu-law samples
    digit      int64 [...]                     the spoken digit
    rendition  int64 [...]                     index into the rendition table below
    engine, voice   str [renditions]           "flite" / "espeak-ng", voice name
    speed, pitch    float [renditions]         flite: duration stretch, target F0 in Hz;
                                               espeak-ng: words per minute, pitch 0..99
    sample_rate     int                        8000

The script is deterministic: running it again with the same flite and espeak-ng versions gives
the same archive. ``mmgen.data.trimodal`` decodes it.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import tempfile

import numpy as np

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SAMPLE_RATE = 8000
CLIP_SECONDS = 0.8
MU = 255

FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FLITE_STRETCHES = (0.9, 1.15)  # duration_stretch; the second setting also raises F0 by 20%
FLITE_F0_MEAN = {"kal": 95.0, "kal16": 110.0, "awb": 120.0, "rms": 90.0, "slt": 190.0}
ESPEAK_BASES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "croak", "Andy", "Gene", "Lee",
                   "Storm", "adam", "belinda", "david", "linda", "max", "paul", "steph")
ESPEAK_RATES = (110, 135, 160, 185)
ESPEAK_PITCHES = (25, 40, 55, 70, 85)
ESPEAK_VOICES = 70


def renditions() -> list[dict]:
    """The fixed rendition table: flite voices x 2 settings, then ESPEAK_VOICES espeak-ng voices."""
    table = []
    for voice in FLITE_VOICES:
        for i, stretch in enumerate(FLITE_STRETCHES):
            table.append({"engine": "flite", "voice": voice, "speed": stretch,
                          "pitch": FLITE_F0_MEAN[voice] * (1.0 if i == 0 else 1.2)})
    pairs = list(itertools.product(ESPEAK_BASES, ESPEAK_VARIANTS))
    # spread the chosen voices over bases and variants: stride through the grid
    stride = len(pairs) // ESPEAK_VOICES
    chosen = [pairs[(i * stride + i // len(ESPEAK_BASES)) % len(pairs)] for i in range(ESPEAK_VOICES)]
    for i, (base, variant) in enumerate(chosen):
        table.append({"engine": "espeak-ng", "voice": f"{base}+{variant}",
                      "speed": float(ESPEAK_RATES[i % len(ESPEAK_RATES)]),
                      "pitch": float(ESPEAK_PITCHES[(i * 3) % len(ESPEAK_PITCHES)])})
    return table


def synthesize(rendition: dict, word: str, path: str) -> None:
    if rendition["engine"] == "flite":
        command = ["flite", "-voice", rendition["voice"], "-t", word, "-o", path,
                   "--setf", f"duration_stretch={rendition['speed']}",
                   "--setf", f"int_f0_target_mean={rendition['pitch']}"]
    else:
        command = ["espeak-ng", "-v", rendition["voice"], "-s", str(int(rendition["speed"])),
                   "-p", str(int(rendition["pitch"])), "-w", path, word]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def load_mono(path: str) -> np.ndarray:
    import soundfile
    import torch
    import torchaudio
    wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
    wave = torch.from_numpy(wave.mean(axis=1))
    return torchaudio.functional.resample(wave, rate, SAMPLE_RATE).numpy()


def fit_clip(wave: np.ndarray) -> np.ndarray:
    """Trim silence, normalize the peak, centre in the fixed window."""
    length = int(CLIP_SECONDS * SAMPLE_RATE)
    loud = np.nonzero(np.abs(wave) > np.abs(wave).max() / 50)[0]
    if len(loud) == 0:
        raise RuntimeError("synthesized clip is silent")
    pad = int(0.03 * SAMPLE_RATE)
    wave = wave[max(0, loud[0] - pad): loud[-1] + pad]
    wave = 0.9 * wave / np.abs(wave).max()
    wave = wave[:length]
    out = np.zeros(length, dtype=np.float32)
    start = (length - len(wave)) // 2
    out[start:start + len(wave)] = wave
    return out


def mu_law_encode(wave: np.ndarray) -> np.ndarray:
    companded = np.sign(wave) * np.log1p(MU * np.abs(wave)) / np.log1p(MU)
    return np.clip(np.round((companded + 1) / 2 * MU), 0, MU).astype(np.uint8)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "mmgen", "data", "files", "spoken_digits.npz"))
    args = parser.parse_args()
    for tool in ("flite", "espeak-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install -y flite espeak-ng")
    table = renditions()
    codes, digits, index = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r, rendition in enumerate(table):
            for d, word in enumerate(DIGITS):
                path = os.path.join(tmp, "clip.wav")
                synthesize(rendition, word, path)
                codes.append(mu_law_encode(fit_clip(load_mono(path))))
                digits.append(d)
                index.append(r)
            print(f"{r + 1:>3}/{len(table)} {rendition['engine']}/{rendition['voice']}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(
        args.out, codes=np.stack(codes), digit=np.array(digits, dtype=np.int64),
        rendition=np.array(index, dtype=np.int64),
        engine=np.array([r["engine"] for r in table]), voice=np.array([r["voice"] for r in table]),
        speed=np.array([r["speed"] for r in table]), pitch=np.array([r["pitch"] for r in table]),
        sample_rate=np.array(SAMPLE_RATE))
    print(f"wrote {len(codes)} clips ({len(table)} renditions per digit) to {args.out} "
          f"({os.path.getsize(args.out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
