"""Datasets from the user's files (mmgen.data.files): folders of images and audio, text files and
JSONL/CSV manifests, their batches, splits, masks, vocabularies, workers and errors; the trainer on
plain torch Datasets and DataLoaders; data_info of every dataset kind."""
import json
import os

import numpy as np
import pytest
import torch

import mmgen.data as data
from mmgen.data import files
from mmgen.data.datasets import Dataset
from mmgen.data.loader import as_batches, batch_order


def _png(path, value, size=(12, 10), rgb=False):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    array = np.full((*size, 3) if rgb else size, value, dtype=np.uint8)
    Image.fromarray(array).save(path)


def _wav(path, freq, seconds=0.25, rate=16000):
    import soundfile
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


@pytest.fixture
def image_folder(tmp_path):
    pytest.importorskip("mmgen_image")
    root = tmp_path / "imgs"
    for k, cls in enumerate(("cat", "dog")):
        for i in range(10):
            _png(str(root / cls / f"{i}.png"), 40 * k + i)
    _png(str(root / "loose.png"), 200)
    (root / "notes.txt").write_text("not an image")
    return root


def test_images_folder_labels_shapes_splits(image_folder):
    splits = files.images(str(image_folder), size=8, val=0.2, test=0.2, seed=1)
    assert sum(len(s) for s in splits.values()) == 21
    assert [len(splits[s]) for s in ("train", "val", "test")] == [13, 4, 4]
    train = data.load("files.images", "train", path=str(image_folder), size=8, val=0.2, test=0.2, seed=1)
    assert train is splits["train"]  # one build for all splits (the same options)
    x = train[0]
    assert x["x"].shape == (1, 8, 8) and x["x"].dtype == torch.float32 and x["y"].dtype == torch.long
    all_y = torch.cat([s.y for s in splits.values()])
    assert sorted(all_y.tolist()) == [-1] + [0] * 10 + [1] * 10
    assert train.info["classes"] == ["cat", "dog"]
    batch = next(train.batches(5))
    assert set(batch) == {"x", "y"} and batch["x"].shape == (5, 1, 8, 8)
    # value of a pixel tells the file: class 1 images are brighter than class 0
    for b in train.batches(4):
        for xi, yi in zip(b["x"], b["y"]):
            if yi == 0:
                assert xi.mean() < 10 / 255 + 1e-3
    info = train.data_info()
    assert info == {"modalities": {"x": {"modality": "image", "channels": 1, "size": 8, "shape": [1, 8, 8]}},
                    "num_classes": 2, "levels": None}
    rgb = files.images(str(image_folder), channels=3)["train"]
    assert rgb[0]["x"].shape == (3, 10, 10)  # size: the first image's shorter side


def test_order_matches_bundled_dataset_and_workers(image_folder):
    train = files.images(str(image_folder), size=4, cache=False)["train"]
    reference = Dataset("ref", "train", torch.arange(len(train)).float(), train.y)
    for epoch in (0, 3):
        got = list(train.batches(3, shuffle=True, seed=5, epoch=epoch, drop_last=True, start=1))
        want = list(reference.batches(3, shuffle=True, seed=5, epoch=epoch, drop_last=True, start=1))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            expected = torch.stack([train[int(i)]["x"] for i in w["x"].long()])
            assert torch.equal(g["x"], expected) and torch.equal(g["y"], w["y"])
    workers = files.images(str(image_folder), size=4, num_workers=2)["train"]
    for epoch in (0, 1):  # epoch 1 comes from the in-memory cache filled by the workers
        a = list(train.batches(4, shuffle=True, seed=2, epoch=epoch))
        b = list(workers.batches(4, shuffle=True, seed=2, epoch=epoch))
        assert all(torch.equal(p["x"], q["x"]) and torch.equal(p["y"], q["y"]) for p, q in zip(a, b))
    assert workers._tensors is not None and train._tensors is None
    # an epoch that drops its last partial batch still leaves the whole split in memory, and the
    # batches cut from memory are the ones the loader gave
    cached = files.images(str(image_folder), size=4, num_workers=2, seed=9)["train"]
    epoch0 = list(cached.batches(4, shuffle=True, seed=2, epoch=0, drop_last=True))
    assert len(cached) % 4 and cached._tensors is not None
    again0 = list(cached.batches(4, shuffle=True, seed=2, epoch=0, drop_last=True))
    assert all(torch.equal(p["x"], q["x"]) and torch.equal(p["y"], q["y"]) for p, q in zip(epoch0, again0))
    import pickle  # spawned workers (macOS, forkserver) get the dataset pickled
    again = pickle.loads(pickle.dumps(train))
    assert torch.equal(again[3]["x"], train[3]["x"])


@pytest.fixture
def audio_folder(tmp_path):
    pytest.importorskip("mmgen_audio")
    pytest.importorskip("soundfile")
    root = tmp_path / "sounds"
    for k, freq in enumerate((300, 2000)):
        for i in range(5):
            _wav(str(root / f"c{k}" / f"{i}.wav"), freq + 10 * i)
    return root


def test_audio_folder(audio_folder):
    splits = files.audio(str(audio_folder), sample_rate=8000, seconds=0.3)
    train = splits["train"]
    wave = train.info["wave"]
    assert wave["sample_rate"] == 8000
    x = train[0]["x"]
    frames = round(0.3 * 8000) // wave["hop_length"] + 1
    assert x.shape == (wave["n_mels"], frames)
    info = train.data_info()["modalities"]["x"]
    assert info["modality"] == "audio" and info["frames"] == frames and info["n_mels"] == wave["n_mels"]
    assert info["wave"] == wave
    # the high tone has its energy in higher mel bins than the low one
    low = [train[i]["x"] for i in range(len(train)) if train.y[i] == 0][0]
    high = [train[i]["x"] for i in range(len(train)) if train.y[i] == 1][0]
    bins = torch.arange(x.shape[0]).float()
    centre = lambda f: (f.exp().mean(1) * bins).sum() / f.exp().mean(1).sum()  # noqa: E731
    assert centre(high) > centre(low)
    default = files.audio(str(audio_folder))["train"]  # seconds: the first clip's (0.25 s at 16 kHz)
    assert default.info["seconds"] == pytest.approx(0.25)


def test_text_file_vocabulary_from_train_only(tmp_path):
    pytest.importorskip("mmgen_text")
    lines = [f"the cat sat number {i % 3} word{i}" for i in range(20)]  # word{i}: only in line i
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n\n")
    splits = files.text(str(path), val=0.1, test=0.1, seed=0)
    assert sum(len(s) for s in splits.values()) == 20
    vocab = splits["train"].info["vocabulary"]
    assert splits["train"].vocab == vocab
    train_words = {w for s in splits["train"].batches(100) for row in s["x"] for w in row.tolist()}
    assert train_words <= set(range(len(vocab)))
    held = [lines[i] for i in files.random_splits(20, 0.1, 0.1, 0)["val"] + files.random_splits(20, 0.1, 0.1, 0)["test"]]
    only_held = {w for line in held for w in line.split()} - {w for i in files.random_splits(20, 0.1, 0.1, 0)["train"]
                                                             for w in lines[i].split()}
    assert only_held and not only_held & set(vocab)
    # a word only in the held-out splits becomes <unk> (id 3)
    ids = torch.cat([splits[s].batches(100).__next__()["x"] for s in ("val", "test")])
    assert (ids == 3).any()
    info = splits["val"].data_info()["modalities"]["x"]
    assert info["modality"] == "text" and info["vocab_size"] == len(vocab) and info["length"] == ids.shape[1]


@pytest.fixture
def manifest_dir(tmp_path):
    pytest.importorskip("mmgen_image")
    pytest.importorskip("mmgen_audio")
    pytest.importorskip("mmgen_text")
    pytest.importorskip("soundfile")
    rows = []
    for i in range(12):
        cls = ("low", "high")[i % 2]
        _png(str(tmp_path / "img" / f"{i}.png"), 20 * i, size=(8, 8))
        _wav(str(tmp_path / "wav" / f"{i}.wav"), 300 if cls == "low" else 2000, seconds=0.2)
        row = {"image": f"img/{i}.png", "audio": f"wav/{i}.wav", "text": f"a {cls} sound {i}", "label": cls,
               "split": "train" if i < 8 else ("val" if i < 10 else "test")}
        if i == 3:
            row["audio"] = ""
        if i == 5:
            del row["text"]
        if i == 9:
            row["image"] = None
        rows.append(row)
    return tmp_path, rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_manifest_jsonl_masks_labels_splits(manifest_dir):
    folder, rows = manifest_dir
    path = _write_jsonl(folder / "m.jsonl", rows)
    splits = data.catalog.factory("files.manifest")(path=path, size=8, sample_rate=8000)
    train, val = splits["train"], splits["val"]
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    assert train.modalities == ("image", "audio", "text")
    assert train.info["classes"] == ["high", "low"] and train.info["label_words"] == ["high", "low"]
    assert train.y.tolist() == [1, 0] * 4
    batch = next(train.batches(8))
    assert set(batch) == {"image", "audio", "text", "image_mask", "audio_mask", "text_mask", "y"}
    assert batch["image"].shape == (8, 1, 8, 8) and batch["audio"].dim() == 3 and batch["text"].dtype == torch.long
    assert batch["image_mask"].dtype == torch.bool and batch["image_mask"].all()  # no missing image in train
    assert batch["audio_mask"].tolist() == [i != 3 for i in range(8)]
    assert batch["text_mask"].tolist() == [i != 5 for i in range(8)]
    assert batch["audio"][3].abs().sum() == 0 and batch["text"][5].abs().sum() == 0
    assert next(val.batches(2))["image_mask"].tolist() == [True, False]
    info = train.data_info()
    assert set(info["modalities"]) == {"image", "audio", "text"} and info["num_classes"] == 2
    assert info["modalities"]["text"]["vocabulary"] == train.info["vocabulary"]
    assert info["modalities"]["audio"]["wave"] == train.info["wave"]
    # the same batches with two workers
    workers = files.manifest(path, size=8, sample_rate=8000, num_workers=2)["train"]
    for p, q in zip(train.batches(3, shuffle=True, seed=1), workers.batches(3, shuffle=True, seed=1)):
        assert p.keys() == q.keys() and all(torch.equal(p[k], q[k]) for k in p)


def test_manifest_csv_mapping_and_random_split(manifest_dir):
    folder, rows = manifest_dir
    lines = ["photo,caption,label"] + [f"{r['image'] or ''},{r.get('text', '')},{i % 3}" for i, r in enumerate(rows)]
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    splits = files.manifest(str(folder / "m.csv"), modalities={"photo": "image", "caption": "text"},
                            val=0.25, test=0.25, seed=3)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [6, 3, 3]
    assert splits["train"].modalities == ("image", "text")
    assert splits["train"].info["classes"] is None
    assert sorted(torch.cat([s.y for s in splits.values()]).tolist()) == sorted(i % 3 for i in range(12))
    assert splits["train"].data_info()["num_classes"] == 3
    assert next(splits["val"].batches(3))["image_mask"].tolist() == [
        rows[i]["image"] is not None for i in files.random_splits(12, 0.25, 0.25, 3)["val"]]


def test_run_config_data_section(image_folder):
    from mmgen import runs
    config = {"data": {"name": "files.images", "path": str(image_folder), "size": 4, "num_workers": 0}}
    train, val = runs.dataset(config, "train"), runs.dataset(config, "val")
    assert train.split == "train" and val.split == "val" and train.info is val.info
    with pytest.raises(ValueError, match="sizes"):
        runs.dataset({"data": {"name": "files.images", "path": str(image_folder), "sizes": 4}}, "train")


def _error(call, *needles):
    with pytest.raises(ValueError) as info:
        call()
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_errors_name_file_and_row(manifest_dir, tmp_path):
    folder, rows = manifest_dir
    _error(lambda: data.load("files.images", "dev", path=str(folder / "img"), size=8), "'dev'", "train")
    bad = [dict(r) for r in rows]
    bad[4]["image"] = "img/nope.png"
    _error(lambda: files.manifest(_write_jsonl(folder / "missing.jsonl", bad)), "nope.png", "line 5")
    (folder / "broken.jsonl").write_text(json.dumps(rows[0]) + "\n{not json\n")
    _error(lambda: files.manifest(str(folder / "broken.jsonl")), "broken.jsonl", "line 2")
    other = [{**r, "video": "x.mp4"} for r in rows]
    _error(lambda: files.manifest(_write_jsonl(folder / "video.jsonl", other)), "'video'", "names no modality",
           "'image'")
    _error(lambda: files.manifest(_write_jsonl(folder / "m2.jsonl", rows), modalities={"image": "smell"}),
           "smell")
    _error(lambda: files.manifest(_write_jsonl(folder / "m3.jsonl", [{**r, "split": "dev"} for r in rows])),
           "'dev'", "line 1")
    # an unreadable image: found when it is decoded, named with its manifest line
    (folder / "img" / "0.png").write_bytes(b"garbage")
    _error(lambda: files.manifest(_write_jsonl(folder / "m4.jsonl", rows), size=8), "0.png", "line 1")  # probed
    (folder / "img" / "2.png").write_bytes(b"garbage")
    ds = files.manifest(_write_jsonl(folder / "m4b.jsonl", rows[1:]), size=8, channels=1)["train"]
    _error(lambda: ds[1], "2.png", "line 2")  # not the first image: found when it is decoded
    (folder / "wav" / "1.wav").write_bytes(b"RIFF garbage")
    _error(lambda: files.manifest(_write_jsonl(folder / "m5.jsonl", rows[1:]), size=8)["train"][0],
           "1.wav", "line 1")
    # options
    _error(lambda: files.images(str(folder / "img"), channels=2), "channels", "2")
    _error(lambda: files.images(str(folder / "img"), val=1.5), "val")
    _error(lambda: files.audio(str(folder / "wav"), sample_rate=10), "sample_rate")
    _error(lambda: files.images(str(tmp_path / "nowhere")), "nowhere", "does not exist")
    _error(lambda: files.text(str(tmp_path / "none.txt")), "none.txt", "does not exist")
    _error(lambda: files.manifest(str(folder / "m.xml")), "m.xml", ".jsonl")


def test_audio_that_cannot_be_resampled(audio_folder, monkeypatch):
    import torchaudio

    def fail(*args, **kwargs):
        raise RuntimeError("no resampler")
    monkeypatch.setattr(torchaudio.functional, "resample", fail)
    _error(lambda: files.audio(str(audio_folder), sample_rate=8000, seconds=0.2, cache=False), ".wav",
           "resample")


def test_data_info_of_bundled_datasets():
    pytest.importorskip("sklearn")
    info = data.load("digits").data_info()
    assert info["modalities"]["x"]["channels"] == 1 and info["modalities"]["x"]["size"] == 8
    assert info["num_classes"] == 10 and info["levels"] == 17
    pytest.importorskip("mmgen_audio")
    pytest.importorskip("mmgen_text")
    tri = data.load("mnist-trimodal").data_info()
    assert tri["modalities"]["image"]["size"] == 28 and tri["modalities"]["audio"]["frames"] == 65
    assert tri["modalities"]["audio"]["n_mels"] == 32 and tri["modalities"]["audio"]["wave"]["sample_rate"] == 8000
    assert tri["modalities"]["text"]["vocab_size"] == len(tri["modalities"]["text"]["vocabulary"])
    assert tri["num_classes"] == 10


class _Dicts(torch.utils.data.Dataset):
    def __init__(self, n=40):
        g = torch.Generator().manual_seed(0)
        self.x = (torch.rand(n, 1, 4, 4, generator=g) > 0.5).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": torch.tensor(i % 2)}


class _Tiny(torch.nn.Module):
    """The smallest trainable model: a linear autoencoder's squared error."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(16, 16)
        self.seen = 0

    def loss(self, x, **cond):
        self.seen += len(x)
        flat = x.flatten(1)
        return ((self.net(flat) - flat) ** 2).mean()

    def save_pretrained(self, folder):
        os.makedirs(folder, exist_ok=True)
        torch.save(self.net.state_dict(), os.path.join(folder, "weights.pt"))


def _tiny_vae():
    return _Tiny()


def test_trainer_on_torch_dataset_and_dataloader(tmp_path):
    from mmgen.train.trainer import Trainer
    model = _tiny_vae()
    plain = _Dicts()
    wrapped = as_batches(plain)
    reference = Dataset("ref", "train", plain.x, torch.arange(40) % 2)
    for p, q in zip(wrapped.batches(8, shuffle=True, seed=3, epoch=1), reference.batches(8, shuffle=True, seed=3, epoch=1)):
        assert torch.equal(p["x"], q["x"]) and torch.equal(p["y"], q["y"])
    config = {"steps": 6, "batch_size": 8, "log_every": 3, "eval_every": 6, "sample_every": 100,
              "checkpoint_every": 100, "progress": False, "device": "cpu"}
    result = Trainer(model, plain, val_data=_Dicts(16), run_dir=str(tmp_path / "a"), config=config).fit()
    assert result["step"] == 6 and model.seen >= 6 * 8
    loader = torch.utils.data.DataLoader(plain, batch_size=8, shuffle=True, drop_last=True)
    assert list(as_batches(loader).batches(epoch=2, seed=1))[0]["x"].shape == (8, 1, 4, 4)
    a = [b["y"] for b in as_batches(loader).batches(seed=1, epoch=2)]
    b = [b["y"] for b in as_batches(loader).batches(seed=1, epoch=2, start=2)]
    assert all(torch.equal(p, q) for p, q in zip(a[2:], b)) and len(b) == len(a) - 2
    result = Trainer(_tiny_vae(), loader, run_dir=str(tmp_path / "b"), config=config).fit()
    assert result["step"] == 6 and (tmp_path / "b" / "metrics.jsonl").exists()


def test_trainer_on_files_manifest_batches(image_folder):
    train = files.images(str(image_folder), size=4)["train"]
    assert batch_order(len(train), 4, shuffle=True, seed=1, epoch=0)[0] == \
        torch.randperm(len(train), generator=torch.Generator().manual_seed(1_000_003))[:4].tolist()
    semi = data.load("files.images", "train", path=str(image_folder), size=4, labels=2)
    assert (semi.y >= 0).sum() == 2 and semi[0]["x"].shape == (1, 4, 4)
