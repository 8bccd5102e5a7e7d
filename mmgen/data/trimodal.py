"""``mnist-trimodal``: MNIST-5k images + spoken digits + text captions, one label (the digit), and the
image's measured attributes.

- image: the MNIST-5k split of :func:`mmgen.data.mnist` (4,000 / 500 / 500), intensities in [0, 1],
  ``[1, 28, 28]``, aligned with the labels.
- audio: the spoken digits of ``files/spoken_digits.npz`` (``scripts/synthesize_speech.py``: flite
  and espeak-ng, 80 renditions per digit, 8 kHz, 0.8 s) as standardized natural-log mel spectrograms
  ``[32, 65]`` (:data:`LOGMEL`, the audio modality's ``features``; ``(log_mel + 4.5) / 4.5``). The renditions are split by voice
  (voices permuted with seed 0): 20% of the voices are test-only, 10% val-only, the rest train,
  so test voices are never heard in training.
- text: captions as token ids (<bos> words <eos>, padded; the text modality's tokenizer). The option
  ``captions`` (``load("mnist-trimodal", split, captions=...)``, or ``data.captions`` in a run
  config) picks which:

  - ``"label"`` (the default): captions of the digit only, from :data:`TEMPLATES` ("the digit
    seven", "a handwritten seven", ...), ``[8]`` over :data:`VOCABULARY`, paired with the images by
    label (below).
  - ``"instance"``: captions of the image itself, the ``mnist-captions`` ones
    (:func:`mmgen.data.captions.mnist_captions`, seed 0: same images, same order): its digit,
    thickness, slant and size ("a small bold 7 leaning right"), ``CAPTIONS_PER_IMAGE`` variants per
    image, aligned with the images; each example gets one variant, drawn every epoch from (seed,
    epoch) (evaluation batches: epoch 0). ``[INSTANCE_CAPTION_LENGTH]`` over
    :func:`instance_vocabulary` (:data:`VOCABULARY`, then the words of the instance captions).

- attributes (both options): batches carry ``"attributes"`` [B, 4], the image's measured digit,
  thickness, slant and size (``mnist-captions``' columns; ``info["attribute_names"]``,
  ``info["attribute_values"]``); ``info["modality_attributes"]`` says which of them each modality
  carries: the image all four, the audio the digit, the text the digit (``"label"``) or all four
  (``"instance"``). ``info["attribute_measures"]`` names the measure that reads the image's
  thickness, slant and size back from any image (:class:`mmgen.data.captions.DigitMeasure`), which
  the judges of :mod:`mmgen.eval.multimodal` use.

Training batches augment the audio; the option ``augment`` (``load("mnist-trimodal", split,
augment=...)``, or ``data.augment`` in a run config: ``--set data.augment=strong``) picks how:

- ``True`` or ``"basic"`` (the default): :func:`augment_audio`, a circular time shift of up to
  ``AUGMENT["max_shift"]`` frames and a random gain.
- ``"strong"``: :func:`augment_audio_strong`, the same shift and gain, then a mel-scale frequency
  warp and a time stretch (the audio modality's ``warp``: other vocal tracts and speaking rates), a
  random smooth EQ curve and SpecAugment masks (one mel band, one time span), with
  :data:`STRONG_AUGMENT`. The train split has one flite voice (awb) among its espeak-ng voices, the
  test split two other flite voices (kal16, slt), so the speech encoder must not learn the training
  voices' timbre; the masks and EQ are reconstruction targets too, which can cost generated speech.
- ``False``: none.

Only the train split is augmented. The choice between ``"basic"`` and ``"strong"`` is made on the
validation voices (``mmgen record`` reports val and test per seed), never on the test split.

Audio (and text with ``captions="label"``) are paired with the images by label: each image gets a
random rendition and a random caption of its digit, drawn again every epoch from (seed, epoch);
evaluation batches use epoch 0.
"""
from __future__ import annotations

import functools
import math
import os

import numpy as np
import torch

from mmgen.data.captions import CAPTIONS_PER_IMAGE, corpus, mnist_captions
from mmgen.data.multimodal import MultimodalDataset

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = ("the digit {}", "a handwritten {}", "number {}", "this is a {}", "an image of the number {}",
             "{}", "the spoken word {}", "a picture of a {}", "it shows a {}", "written digit {}")
# the text modality's special tokens first (its tokenizer checks them), then the words.
VOCABULARY = ("<pad>", "<bos>", "<eos>", "<unk>", *sorted(
    {w for t in TEMPLATES for w in t.format("").split()} | set(DIGIT_WORDS)))
CAPTION_LENGTH = 8  # <bos> + at most 6 words + <eos>
CAPTION_KINDS = ("label", "instance")  # the values mnist_trimodal(captions=...) accepts
# captions="instance": <bos> + at most 15 tokens ("the digit 7 , medium sized , with regular strokes , slanted
# to the right") + <eos>
INSTANCE_CAPTION_LENGTH = 17
LOGMEL = {"sample_rate": 8000, "n_fft": 256, "hop_length": 100, "n_mels": 32, "floor": 1e-4}
CLIP_SAMPLES = 6400  # 0.8 s at 8 kHz, as scripts/synthesize_speech.py writes them
FRAMES = CLIP_SAMPLES // LOGMEL["hop_length"] + 1  # 65 log-mel frames per clip
# audio features are standardized log-mels, (log_mel - mean) / std, with these fixed constants (close
# to the train split's statistics); ``WAVE`` tells the audio modality how to turn them into sound.
LOG_MEL_MEAN, LOG_MEL_STD = -4.5, 4.5
WAVE = {**LOGMEL, "mean": LOG_MEL_MEAN, "std": LOG_MEL_STD}
SPEECH_FILE = os.path.join(os.path.dirname(__file__), "files", "spoken_digits.npz")
VOICE_SPLIT = {"test": 0.2, "val": 0.1}
AUGMENT = {"max_shift": 4, "gain_std": 0.2}  # train split: frames of circular time shift, log-gain
# augment="strong" (see augment_audio_strong): AUGMENT's shift and gain, then the largest frequency and
# time scale factors (log-uniform in [1 / (1 + x), 1 + x]), std of a random smooth EQ curve, widest
# masked mel band and time span
STRONG_AUGMENT = {"max_shift": 4, "gain_std": 0.2, "warp": 0.2, "stretch": 0.15, "eq_std": 0.3, "freq_mask": 4,
                  "time_mask": 8}
EQ_TERMS = 3  # cosines over the mel axis in the EQ curve
AUGMENT_LEVELS = (False, True, "basic", "strong")  # the values mnist_trimodal(augment=...) accepts
MU = 255


def mu_law_decode(codes: np.ndarray) -> np.ndarray:
    """8-bit mu-law codes -> float waveform in [-1, 1] (inverse of the synthesis script's encoder)."""
    companded = codes.astype(np.float32) / MU * 2 - 1
    return (np.sign(companded) * np.expm1(np.abs(companded) * np.log1p(MU)) / MU).astype(np.float32)


@functools.lru_cache(maxsize=None)
def spoken_digits() -> dict:
    """The speech archive: ``wave`` float32 [clips, samples], ``digit``, ``rendition``, ``voice`` ..."""
    if not os.path.exists(SPEECH_FILE):
        raise FileNotFoundError(f"{SPEECH_FILE} is missing; regenerate it with scripts/synthesize_speech.py")
    with np.load(SPEECH_FILE) as f:
        archive = {k: f[k] for k in f.files}
    archive["wave"] = mu_law_decode(archive.pop("codes"))
    return archive


def voice_split() -> dict[str, list[str]]:
    """Voice names per split: a permutation (seed 0) of the sorted voices, test first, then val."""
    voices = sorted(set(spoken_digits()["voice"].tolist()))
    perm = torch.randperm(len(voices), generator=torch.Generator().manual_seed(0)).tolist()
    n_test, n_val = (round(VOICE_SPLIT[s] * len(voices)) for s in ("test", "val"))
    ordered = [voices[i] for i in perm]
    return {"test": ordered[:n_test], "val": ordered[n_test:n_test + n_val], "train": ordered[n_test + n_val:]}


@functools.lru_cache(maxsize=None)
def _log_mels() -> torch.Tensor:
    from mmgen import modalities
    audio = modalities.get("audio")  # an error names the plugin when it is missing
    archive = spoken_digits()
    if int(archive["sample_rate"]) != LOGMEL["sample_rate"] or archive["wave"].shape[1] != CLIP_SAMPLES:
        raise ValueError(f"{SPEECH_FILE} holds clips of {archive['wave'].shape[1]} samples at "
                         f"{int(archive['sample_rate'])} Hz, expected {CLIP_SAMPLES} at {LOGMEL['sample_rate']}")
    return audio.features(torch.from_numpy(archive["wave"]), **WAVE)


def encode(texts: list[str], vocabulary, length: int) -> torch.Tensor:
    """Token ids [len(texts), length] of ``texts`` (the text modality's tokenizer, padded with <pad>);
    a ValueError names a caption with a word outside ``vocabulary`` or longer than ``length`` tokens."""
    from mmgen import modalities
    tokens = modalities.get("text").encode(texts, list(vocabulary))
    unknown = torch.nonzero((tokens == vocabulary.index("<unk>")).any(1)).flatten()
    if len(unknown):
        raise ValueError(f"mnist-trimodal: caption {texts[unknown[0]]!r} has words outside its vocabulary")
    if tokens.shape[1] > length:
        longest = int((tokens != vocabulary.index("<pad>")).sum(1).argmax())
        raise ValueError(f"mnist-trimodal: caption {texts[longest]!r} is {tokens.shape[1]} tokens long, "
                         f"more than the caption length {length}")
    return torch.nn.functional.pad(tokens, (0, length - tokens.shape[1]), value=vocabulary.index("<pad>"))


@functools.lru_cache(maxsize=None)
def captions() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Token ids [100, CAPTION_LENGTH], labels [100] and the caption strings (template x digit)."""
    texts = [t.format(w) for t in TEMPLATES for w in DIGIT_WORDS]
    labels = torch.tensor([d for _ in TEMPLATES for d in range(10)])
    return encode(texts, VOCABULARY, CAPTION_LENGTH), labels, texts


@functools.lru_cache(maxsize=None)
def instance_vocabulary() -> tuple[str, ...]:
    """The vocabulary of ``captions="instance"``: :data:`VOCABULARY` (same ids), then the other words
    of the ``mnist-captions`` captions, sorted."""
    from mmgen import modalities
    words = modalities.get("text").vocabulary(corpus("mnist-captions"))
    return (*VOCABULARY, *sorted(set(words) - set(VOCABULARY)))


def instance_captions(texts: list[tuple[str, ...]]) -> torch.Tensor:
    """Token ids [N, CAPTIONS_PER_IMAGE, INSTANCE_CAPTION_LENGTH] of the caption variants of N images."""
    flat = [caption for variants in texts for caption in variants]
    return encode(flat, instance_vocabulary(), INSTANCE_CAPTION_LENGTH).view(len(texts), CAPTIONS_PER_IMAGE, -1)


def augment_audio(features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Train-time augmentation of a batch of standardized log-mels [B, n_mels, frames]: each clip
    shifted circularly by up to ``max_shift`` frames (the clips are centred in silence) and offset
    by a gain drawn from N(0, gain_std^2) (in standardized log-power units)."""
    shifts = torch.randint(-AUGMENT["max_shift"], AUGMENT["max_shift"] + 1, (len(features),), generator=generator)
    frames = torch.arange(features.shape[-1])
    index = (frames.unsqueeze(0) - shifts.unsqueeze(1)) % features.shape[-1]
    shifted = features.gather(2, index.unsqueeze(1).expand_as(features))
    return shifted + AUGMENT["gain_std"] * torch.randn(len(features), 1, 1, generator=generator)


def _log_uniform(n: int, spread: float, generator: torch.Generator) -> torch.Tensor:
    return torch.exp((2 * torch.rand(n, generator=generator) - 1) * math.log1p(spread))


def _mask(features: torch.Tensor, dim: int, widest: int, generator: torch.Generator) -> torch.Tensor:
    """Set a random span of up to ``widest`` rows (dim 1) or frames (dim 2) of each clip to 0, the
    standardized mean (SpecAugment)."""
    size = features.shape[dim]
    width = torch.randint(widest + 1, (len(features), 1), generator=generator)
    start = (torch.rand(len(features), 1, generator=generator) * (size - width + 1)).long()
    position = torch.arange(size).unsqueeze(0)
    hidden = (position >= start) & (position < start + width)
    return features.masked_fill(hidden.unsqueeze(2 if dim == 1 else 1), 0.0)


def augment_audio_strong(features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``augment="strong"``: train-time augmentation of a batch of standardized log-mels
    [B, n_mels, frames], per clip (:data:`STRONG_AUGMENT`): circular time shift by up to
    ``max_shift`` frames (the clips are centred in silence); frequency and time scaling
    (the audio modality's ``warp``: other vocal tracts and speaking rates); a gain from
    N(0, gain_std^2) plus a smooth EQ curve (``EQ_TERMS`` cosines over the mel axis with
    N(0, eq_std^2) weights; other synthesizers and channels), in standardized log-power units; one
    masked mel band and one masked time span. The same generator state gives the same output."""
    n, n_mels, frames = features.shape
    shifts = torch.randint(-STRONG_AUGMENT["max_shift"], STRONG_AUGMENT["max_shift"] + 1, (n,), generator=generator)
    index = (torch.arange(frames).unsqueeze(0) - shifts.unsqueeze(1)) % frames
    out = features.gather(2, index.unsqueeze(1).expand_as(features))
    out = out + STRONG_AUGMENT["gain_std"] * torch.randn(n, 1, 1, generator=generator)
    from mmgen import modalities
    out = modalities.get("audio").warp(out, _log_uniform(n, STRONG_AUGMENT["warp"], generator),
                                       _log_uniform(n, STRONG_AUGMENT["stretch"], generator), **WAVE)
    mel_axis = torch.arange(n_mels, dtype=out.dtype) / (n_mels - 1)
    basis = torch.cos(torch.pi * torch.arange(1, EQ_TERMS + 1, dtype=out.dtype).unsqueeze(1) * mel_axis)
    out = out + (STRONG_AUGMENT["eq_std"] * torch.randn(n, EQ_TERMS, generator=generator) @ basis).unsqueeze(2)
    return _mask(_mask(out, 1, STRONG_AUGMENT["freq_mask"], generator), 2, STRONG_AUGMENT["time_mask"], generator)


# the train split's audio transform per augment level
TRANSFORMS = {"basic": augment_audio, "strong": augment_audio_strong}


def _augment_level(augment) -> str:
    """``augment`` as "none", "basic" or "strong"; any other value is an error naming it."""
    if augment is False:
        return "none"
    if augment is True:
        return "basic"
    if isinstance(augment, str) and augment in TRANSFORMS:
        return augment
    raise ValueError(f"mnist-trimodal: unknown augment={augment!r}; accepted: "
                     f"{', '.join(repr(v) for v in AUGMENT_LEVELS)}")


def mnist_trimodal(augment: bool | str = True, captions: str = "label") -> dict[str, MultimodalDataset]:
    """The three splits (see the module docs); ``augment``: False, True or "basic" (the default),
    or "strong"; ``captions``: "label" (the default) or "instance"."""
    if not isinstance(captions, str) or captions not in CAPTION_KINDS:
        raise ValueError(f"mnist-trimodal: unknown captions={captions!r}; accepted: "
                         f"{', '.join(repr(v) for v in CAPTION_KINDS)}")
    return _mnist_trimodal(_augment_level(augment), captions)


@functools.lru_cache(maxsize=None)
def _mnist_trimodal(level: str, kind: str) -> dict[str, MultimodalDataset]:
    from mmgen.data.datasets import mnist
    archive = spoken_digits()
    mels = _log_mels()
    measured = mnist_captions()
    vocabulary = instance_vocabulary() if kind == "instance" else VOCABULARY
    names = list(measured["train"].attribute_names)
    out = {}
    for split, voices in voice_split().items():
        chosen = np.isin(archive["voice"][archive["rendition"]], voices)
        keep = torch.from_numpy(np.nonzero(chosen)[0])
        images = mnist(binarize=None)[split]
        if not torch.equal(measured[split].x, images.x):
            raise RuntimeError(f"mnist-captions and mnist-trimodal hold different {split} images")
        pools = {"audio": (mels[keep].contiguous(), torch.from_numpy(archive["digit"])[keep])}
        if kind == "label":
            pools["text"] = captions()[:2]
        out[split] = MultimodalDataset(
            "mnist-trimodal", split, images.y,
            aligned={"image": images.x}, pools=pools,
            choices={"text": instance_captions(measured[split].captions)} if kind == "instance" else {},
            attributes=measured[split].attributes,
            transforms={"audio": TRANSFORMS[level]} if level != "none" and split == "train" else {},
            info={"rendition": torch.from_numpy(archive["rendition"])[keep], "voices": voices,
                  "wave": dict(WAVE), "vocabulary": list(vocabulary),
                  "label_words": list(DIGIT_WORDS), "captions": kind, "attribute_names": names,
                  "attribute_values": [list(v) for v in measured[split].attribute_values],
                  "attribute_measures": {"image": "mnist-digits"},
                  "modality_attributes": {"image": list(names), "audio": ["digit"],
                                          "text": list(names) if kind == "instance" else ["digit"]}})
    return out
