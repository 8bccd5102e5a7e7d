"""mnist-trimodal: the committed speech archive, the split by voice and the pairing by label."""
import importlib.util
import os

import numpy as np
import pytest
import torch

from mmgen.data import load
from mmgen.data import trimodal
from mmgen.data.multimodal import MultimodalDataset

pytestmark = pytest.mark.plugins("image", "audio", "text")

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "synthesize_speech.py")


@pytest.fixture(scope="module")
def splits():
    return trimodal.mnist_trimodal()


def test_speech_archive_has_many_renditions_per_digit():
    archive = trimodal.spoken_digits()
    assert archive["wave"].shape[1] == trimodal.CLIP_SAMPLES and int(archive["sample_rate"]) == 8000
    assert archive["wave"].dtype == np.float32 and np.abs(archive["wave"]).max() <= 1.0
    for digit in range(10):
        renditions = archive["rendition"][archive["digit"] == digit]
        assert len(set(renditions.tolist())) >= 20
        # every clip of the digit carries sound (peak-normalized to 0.9 before mu-law coding)
        assert np.abs(archive["wave"][archive["digit"] == digit]).max(axis=1).min() > 0.5
    assert {"flite", "espeak-ng"} == set(archive["engine"].tolist())


def test_mu_law_decoder_inverts_the_synthesis_script_encoder():
    spec = importlib.util.spec_from_file_location("synthesize_speech", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    wave = np.linspace(-0.95, 0.95, 1001, dtype=np.float32)
    decoded = trimodal.mu_law_decode(script.mu_law_encode(wave))
    # 8-bit mu-law: half a step is ln(256) / 255 ~ 2.2% of the value (plus a tiny floor near 0)
    assert np.all(np.abs(decoded - wave) <= 0.023 * np.abs(wave) + 1e-4)
    assert np.abs(decoded - wave).max() > 0.005  # it is a lossy 8-bit code, not the identity
    archive = trimodal.spoken_digits()  # the committed archive was made from the script's table
    assert archive["voice"].tolist() == [r["voice"] for r in script.renditions()]
    assert archive["speed"].tolist() == [r["speed"] for r in script.renditions()]
    assert archive["pitch"].tolist() == [r["pitch"] for r in script.renditions()]


def test_split_by_voice_keeps_test_voices_unseen(splits):
    voices = trimodal.voice_split()
    assert not set(voices["test"]) & set(voices["train"])
    assert not set(voices["val"]) & (set(voices["train"]) | set(voices["test"]))
    archive = trimodal.spoken_digits()
    seen = {s: set(splits[s].info["rendition"].tolist()) for s in splits}
    assert not seen["test"] & seen["train"] and not seen["val"] & seen["train"]
    for s in splits:
        assert set(archive["voice"][list(seen[s])].tolist()) == set(voices[s])
        assert set(splits[s].pools["audio"][1].tolist()) == set(range(10))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4000, 500, 500]


def test_batches_pair_audio_and_text_by_label(splits):
    data = splits["test"]
    batch = next(data.batches(64))
    pairing = data.pairing(seed=0, epoch=0)
    audio_values, audio_labels = data.pools["audio"]
    assert torch.equal(audio_labels[pairing["audio"][:64]], batch["y"])
    assert torch.equal(batch["audio"], audio_values[pairing["audio"][:64]])
    words = [[trimodal.VOCABULARY[i] for i in row] for row in batch["text"].tolist()]
    for row, label in zip(words, batch["y"].tolist()):
        assert trimodal.DIGIT_WORDS[label] in row and row[0] == "<bos>" and "<eos>" in row
    assert batch["image"].shape == (64, 1, 28, 28) and batch["audio"].shape == (64, 32, trimodal.FRAMES)


def test_pairing_is_redrawn_every_epoch_and_reproducible(splits):
    data = splits["train"]
    first, again, later = data.pairing(0, 0), data.pairing(0, 0), data.pairing(0, 1)
    assert all(torch.equal(first[m], again[m]) for m in first)
    assert (first["audio"] != later["audio"]).float().mean() > 0.5
    labels = data.pools["audio"][1]
    assert torch.equal(labels[later["audio"]], data.y)


def test_resumed_epoch_sees_the_same_batches(splits):
    data = splits["train"]
    full = list(data.batches(500, shuffle=True, seed=3, epoch=2, drop_last=True))
    resumed = list(data.batches(500, shuffle=True, seed=3, epoch=2, drop_last=True, start=5))
    assert len(full) == 8 and len(resumed) == 3
    for a, b in zip(full[5:], resumed):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_audio_is_augmented_and_eval_audio_is_not(splits):
    train, test = splits["train"], splits["test"]
    batch = next(train.batches(32))
    raw = train.pools["audio"][0][train.pairing()["audio"][:32]]
    assert not torch.allclose(batch["audio"], raw)
    plain = trimodal.mnist_trimodal(augment=False)["train"]
    assert torch.equal(next(plain.batches(32))["audio"], raw)
    assert torch.equal(next(test.batches(32))["audio"], test.pools["audio"][0][test.pairing()["audio"][:32]])


def test_registered_as_a_dataset():
    data = load("mnist-trimodal", "val")
    assert isinstance(data, MultimodalDataset) and data.modalities == ("image", "audio", "text")
    with pytest.raises(ValueError, match="no member with label"):
        MultimodalDataset("x", "train", torch.tensor([0, 1]), pools={"a": (torch.zeros(1, 2), torch.tensor([0]))})
