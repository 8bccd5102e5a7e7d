"""Issue 16's acceptance: a manifest over files the test writes (RGB PNGs at 20x20, 16 kHz WAVs,
captions, labels, some rows missing a modality) trains the mfm-digits preset with only its data
section replaced, through `mmgen train CONFIG`; `mmgen sample` and `mmgen eval` work on the run;
the captioned view feeds a caption-conditioned model."""
import json

import pytest
import torch
from helpers import torchrun

from mmgen import presets
from mmgen.cli import main as cli
from mmgen.data import load
from mmgen.models import GenerativeModel
from own_data import COLOURS, write_dataset

pytestmark = pytest.mark.plugins("image", "audio", "text")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("own") / "my_data"))


def test_mfm_preset_with_only_its_data_replaced(manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = presets.get("mfm-digits")
    config["data"] = {"name": "files.manifest", "path": manifest}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    run = tmp_path / "run"
    assert cli(["train", str(path), "--out", str(run), "--set", "train.steps=12",
                "--set", "eval.judge_steps=10"]) == 0
    # every number the model needs came from the files
    saved = json.loads((run / "model" / "config.json").read_text())
    image, audio, text = (saved["modalities"][m] for m in ("image", "audio", "text"))
    assert image["encoder"]["in_channels"] == 3 and image["encoder"]["size"] == 20
    assert audio["wave"]["sample_rate"] == 16000 and audio["decoder"]["frames"] == 8000 // 200 + 1  # 0.5 s clips
    train = load("files.manifest", "train", path=manifest)
    assert text["vocabulary"] == train.data_info()["modalities"]["text"]["vocabulary"]
    assert saved["num_classes"] == 3
    # the evaluation counted, per metric, the rows holding what it needs
    assert json.loads((run / "eval_val.json").read_text())["split"] == "val"  # training ends on val
    assert cli(["eval", str(run), "--split", "test"]) == 0
    report = json.loads((run / "eval_test.json").read_text())
    test = load("files.manifest", "test", path=manifest)
    with_audio = sum(int(b["audio_mask"].sum()) for b in test.batches(64))
    assert report["examples"] == len(test)
    assert with_audio < len(test)  # the fixture leaves some test rows without audio
    assert report["examples_accuracy_audio"] == report["examples_recon_nll_audio"] == with_audio
    assert "examples_accuracy_image" not in report  # every row has its image
    for key in ("accuracy", "accuracy_image", "accuracy_audio", "accuracy_text", "cross_text_to_image",
                "judge_accuracy_audio", "recon_nll_audio"):
        assert report[key] is not None, key
    # sampling and evaluation on the run
    assert cli(["sample", str(run), "-n", "6"]) == 0
    for name in ("image.png", "audio.wav", "text.txt", "from_text-image.png", "from_image-audio.wav"):
        assert (run / "samples" / f"sample-seed0-{name}").stat().st_size > 0, name
    assert cli(["eval", str(run), "--split", "val"]) == 0
    assert json.loads((run / "eval_val.json").read_text())["split"] == "val"
    model = GenerativeModel.from_pretrained(str(run / "model"))  # no data needed to rebuild it
    batch = next(test.batches(8))
    assert model.predict(batch, ["image"]).shape == (8,)


def test_the_captioned_view_feeds_a_caption_cvae(manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    splits = {s: load("files.manifest", s, path=manifest, x="image", captions="text") for s in ("train", "test")}
    batch = next(splits["train"].batches(5))
    assert batch["x"].shape == (5, 3, 20, 20) and len(batch["captions"]) == 5
    assert all(c in {f"a {colour} square" for colour in COLOURS} for c in batch["captions"])
    everything = load("files.manifest", "train", path=manifest)
    assert len(splits["train"]) < len(everything)  # rows without a caption are left out
    info = splits["train"].data_info()["modalities"]
    assert set(info) == {"x", "captions"} and info["captions"]["vocabulary"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    config = {"data": {"name": "files.manifest", "path": manifest, "x": "image", "captions": "text"},
              "model": {"model": "cvae", "latent_dim": 8, "likelihood": "bernoulli",
                        "encoder": {"name": "image.conv", "out_features": 32},
                        "decoder": {"name": "image.conv", "in_features": 24},
                        "text_encoder": {"name": "text.gru", "out_features": 16, "embed_dim": 8, "hidden": 16}},
              "train": {"steps": 6, "batch_size": 16, "progress": False}}
    path = tmp_path / "cvae.json"
    path.write_text(json.dumps(config))
    run = tmp_path / "cvae"
    assert cli(["train", str(path), "--out", str(run)]) == 0
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["vocab"] == info["captions"]["vocabulary"] and saved["encoder"]["size"] == 20
    assert saved["prompts"] == splits["train"].info["captions"]["prompts"]  # distinct train captions, in order
    assert sorted(saved["prompts"]) == sorted(f"a {c} square" for c in COLOURS)
    assert cli(["sample", str(run), "--prompt", "a blue square", "-n", "4"]) == 0
    assert (run / "samples" / "prompt-a-blue-square-seed0.png").exists()
    model = GenerativeModel.from_pretrained(str(run / "model"))
    assert model.sample(2, y="a green square").shape == (2, 3, 20, 20)


def test_bad_manifest_rows_are_named(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"image": "missing.png", "label": 0}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl line 1: image file 'missing.png' .* does not exist"):
        load("files.manifest", "train", path=str(tmp_path / "m.jsonl"))
    (tmp_path / "n.jsonl").write_text('{"photo": "a.png"}\n')
    with pytest.raises(ValueError, match=r"column 'photo' names no modality; accepted: .*image"):
        load("files.manifest", "train", path=str(tmp_path / "n.jsonl"))


def test_two_processes_train_on_the_manifest_and_its_captioned_view(manifest, tmp_path):
    """Under torchrun each rank trains on its share of every global batch: the masks of rows missing a
    modality and the caption strings are sharded with the rest (gloo, 2 CPU processes)."""
    mfm = presets.get("mfm-digits")
    mfm["data"] = {"name": "files.manifest", "path": manifest}
    cvae = {"data": {"name": "files.manifest", "path": manifest, "x": "image", "captions": "text"},
            "model": {"model": "cvae", "latent_dim": 8, "likelihood": "bernoulli",
                      "encoder": {"name": "image.conv", "out_features": 32},
                      "decoder": {"name": "image.conv", "in_features": 24},
                      "text_encoder": {"name": "text.gru", "out_features": 16, "embed_dim": 8, "hidden": 16}}}
    for name, config, extra in (("mfm", mfm, ["--set", "eval.judges=false", "--set", "eval.pocketsphinx=false"]),
                                ("cvae", cvae, [])):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        run = tmp_path / name
        done = torchrun("-m", "mmgen", "train", str(path), "--out", str(run), "--set", "train.steps=4",
                        "--set", "train.batch_size=16", "--set", "train.log_every=1",
                        "--set", "train.progress=false", *extra)
        assert done.stdout.count("run folder:") == 1, name  # rank 0 alone evaluates and prints
        losses = [json.loads(line) for line in open(run / "metrics.jsonl") if '"loss"' in line]
        assert [r["step"] for r in losses] == [1, 2, 3, 4], name
        state = torch.load(run / "checkpoints" / "step-000004" / "training_state.pt", weights_only=True)
        assert len(state["rng_per_rank"]) == 2, name
