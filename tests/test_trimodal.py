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


def test_true_and_basic_augment_the_same_way_as_the_default(splits):
    assert splits["train"].transforms == {"audio": trimodal.augment_audio}
    for data in (trimodal.mnist_trimodal(augment=True), trimodal.mnist_trimodal(augment="basic")):
        assert data["train"].transforms == {"audio": trimodal.augment_audio}
        for split in ("train", "val"):
            for a, b in zip(splits[split].batches(500, shuffle=True, seed=1, epoch=1),
                            data[split].batches(500, shuffle=True, seed=1, epoch=1)):
                assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_strong_augments_only_the_train_audio(splits):
    strong = trimodal.mnist_trimodal(augment="strong")
    assert strong["train"].transforms == {"audio": trimodal.augment_audio_strong}
    assert strong["val"].transforms == {} and strong["test"].transforms == {}
    a, b = (next(d["train"].batches(32, shuffle=True, seed=3, epoch=1)) for d in (splits, strong))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["text"], b["text"])
    assert not torch.allclose(a["audio"], b["audio"])


@pytest.mark.parametrize("bad", ["strog", "none", "True", 1, 0, None])
def test_unknown_augment_value_is_an_error_naming_it(bad):
    with pytest.raises(ValueError, match=rf"augment={bad!r}; accepted: False, True, 'basic', 'strong'"):
        load("mnist-trimodal", "train", augment=bad)


def test_strong_augmentation_is_reproducible_and_only_perturbs(monkeypatch):
    plain = trimodal.mnist_trimodal(augment=False)["train"]
    raw = next(plain.batches(32))["audio"]
    first, again, other = (trimodal.augment_audio_strong(raw, torch.Generator().manual_seed(s)) for s in (5, 5, 6))
    assert first.shape == raw.shape and torch.equal(first, again) and not torch.allclose(first, other)
    with monkeypatch.context() as m:
        m.setattr(trimodal, "STRONG_AUGMENT", {k: 0 for k in trimodal.STRONG_AUGMENT})
        assert torch.allclose(trimodal.augment_audio_strong(raw, torch.Generator().manual_seed(5)), raw, atol=1e-4)
    train = trimodal.mnist_trimodal(augment="strong")["train"]
    a, b = (next(train.batches(32, shuffle=True, seed=3, epoch=1))["audio"] for _ in range(2))
    assert torch.equal(a, b)  # batches of a (seed, epoch) are reproducible, augmentation included


def test_augment_is_a_run_config_data_option():
    from mmgen import presets, runs
    config = runs.apply_overrides(presets.get("mfm-digits"), ["data.augment=strong"])
    assert config["data"] == {"name": "mnist-trimodal", "augment": "strong"}
    assert runs.dataset(config, "train").transforms == {"audio": trimodal.augment_audio_strong}
    assert runs.apply_overrides(config, ["data.augment=false"])["data"]["augment"] is False
    with pytest.raises(ValueError, match=r"run config data: .*augment='strog'; accepted: False, True, "):
        runs.dataset(runs.apply_overrides(config, ["data.augment=strog"]), "train")


def test_registered_as_a_dataset():
    data = load("mnist-trimodal", "val")
    assert isinstance(data, MultimodalDataset) and data.modalities == ("image", "audio", "text")
    with pytest.raises(ValueError, match="no member with label"):
        MultimodalDataset("x", "train", torch.tensor([0, 1]), pools={"a": (torch.zeros(1, 2), torch.tensor([0]))})
