"""The MultiBench affect loader, on a small synthetic pickle written in that exact format."""
import itertools
import pickle

import numpy as np
import pytest
import torch

from mmgen.data import load
from mmgen.data.multibench import load_affect
from mmgen.models import MFM

DIMS = {"vision": 5, "audio": 4, "text": 6}
STEPS = 12


def write_affect_pickle(path, sizes=(96, 24, 48), seed=0):
    """MOSI-like: {"train"|"valid"|"test": {"vision", "audio", "text": [N, T, F] float, left-padded
    with zeros; "labels": [N, 1, 1] sentiment in [-3, 3]; "id": [N, 1]}}; audio holds some -inf as
    MOSI's COVAREP features do. The features carry the sign of the sentiment, so it can be learned."""
    rng = np.random.default_rng(seed)
    data = {}
    for key, n in zip(("train", "valid", "test"), sizes):
        scores = rng.uniform(-3, 3, n).astype(np.float32)
        split = {"labels": scores.reshape(n, 1, 1), "id": np.array([[f"{key}{i}"] for i in range(n)])}
        for m, f in DIMS.items():
            x = rng.normal(0, 1, (n, STEPS, f)).astype(np.float32) + np.sign(scores)[:, None, None] * 0.8
            x = x * 10.0 + 3.0  # raw feature scales are arbitrary: the loader standardizes
            lengths = rng.integers(4, STEPS + 1, n)
            for i, length in enumerate(lengths):
                x[i, :STEPS - length] = 0.0  # left padding
            split[m] = x.astype(np.float64 if m == "text" else np.float32)
        split["audio"][0, -1, 0] = -np.inf
        data[key] = split
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return data


@pytest.fixture(scope="module")
def affect_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("affect") / "mosi_synthetic.pkl"
    raw = write_affect_pickle(path)
    return str(path), raw


def test_loader_reads_the_format(affect_file):
    path, raw = affect_file
    splits = load_affect(path)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [96, 24, 48]
    train = splits["train"]
    assert train.modalities == ("vision", "audio", "text")
    for m, f in DIMS.items():
        assert train.aligned[m].shape == (96, f, STEPS) and train.aligned[m].dtype == torch.float32
        assert torch.isfinite(train.aligned[m]).all()
        assert train.aligned[m].mean(dim=(0, 2)).abs().max() < 1e-4  # standardized on train
        assert (train.aligned[m].std(dim=(0, 2)) - 1).abs().max() < 1e-3
    scores = raw["test"]["labels"].reshape(-1)
    assert torch.equal(splits["test"].y, torch.from_numpy((scores >= 0).astype(np.int64)))
    assert torch.allclose(splits["test"].info["scores"], torch.from_numpy(scores))
    unscaled = load_affect(path, standardize=False)["train"].aligned["vision"]
    expected = torch.from_numpy(raw["train"]["vision"]).transpose(1, 2)
    assert torch.equal(unscaled, expected)  # features-first [N, F, T], values untouched
    assert load_affect(path, standardize=False)["train"].aligned["audio"][0, 0, -1] == 0  # was -inf


def test_seven_classes_and_modality_choice(affect_file):
    path, raw = affect_file
    data = load_affect(path, task="7class", modalities=["audio", "text"])["val"]
    scores = raw["valid"]["labels"].reshape(-1)
    assert data.modalities == ("audio", "text")
    assert torch.equal(data.y, torch.from_numpy(np.round(np.clip(scores, -3, 3)).astype(np.int64) + 3))
    assert load("multibench-affect", "test", path=path).modalities == ("vision", "audio", "text")


def test_bad_files_and_options_are_named(tmp_path, affect_file):
    path, raw = affect_file
    with pytest.raises(ValueError, match="accepted: binary, 7class"):
        load_affect(path, task="regression")
    with pytest.raises(ValueError, match="non-empty subset"):
        load_affect(path, modalities=("video",))
    broken = tmp_path / "broken.pkl"
    with open(broken, "wb") as f:
        pickle.dump({"train": raw["train"], "test": raw["test"]}, f)
    with pytest.raises(ValueError, match="missing \\['valid'\\]"):
        load_affect(str(broken))
    flat = tmp_path / "flat.pkl"
    with open(flat, "wb") as f:
        pickle.dump({k: {**v, "vision": v["vision"][:, 0]} for k, v in raw.items()}, f)
    with pytest.raises(ValueError, match="must be \\[N, T, F\\]"):
        load_affect(str(flat))


@pytest.mark.plugins("audio")
def test_mfm_trains_on_affect_features(affect_file):
    path, _ = affect_file
    splits = load_affect(path)
    seq = {m: {"encoder": {"name": "audio.mel", "n_mels": f, "out_features": 32, "hidden": 16},
               "decoder": {"name": "audio.mel", "in_features": 32, "n_mels": f, "frames": STEPS, "hidden": 16},
               "likelihood": "gaussian"} for m, f in DIMS.items()}
    torch.manual_seed(0)
    model = MFM(seq, num_classes=2, zy_dim=4, za_dim=2, hidden=32, label_weight=5.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for epoch in range(25):
        for batch in splits["train"].batches(32, shuffle=True, epoch=epoch):
            loss = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 20
    model.eval()
    test = next(splits["test"].batches(48))
    for r in (1, 3):
        for present in itertools.combinations(DIMS, r):
            accuracy = (model.predict(test, present) == test["y"]).float().mean()
            assert accuracy > 0.75, (present, accuracy)
