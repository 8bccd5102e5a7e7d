"""mnist-trimodal with captions="instance" (each image's own captions) and the measured attributes."""
import hashlib

import pytest
import torch

from mmgen import modalities
from mmgen.data import load, trimodal
from mmgen.data.captions import CAPTIONS_PER_IMAGE, DIGIT_WORDS, MNIST_WORDS, mnist_captions
from mmgen.data.multimodal import MultimodalDataset

pytestmark = pytest.mark.plugins("image", "audio", "text")

# digest() of the label-mode splits, recorded by running the code before the option existed (commit 3bae4de)
LABEL_MODE_DIGEST = "d1df378d2a05d865c48ac9e6c9c354ab6e01ea2edfdf23af25aafff71fac84fd"


@pytest.fixture(scope="module")
def label():
    return trimodal.mnist_trimodal()


@pytest.fixture(scope="module")
def instance():
    return trimodal.mnist_trimodal(captions="instance")


def digest(splits) -> str:
    """sha256 of the exact tensors of label-mode batches (labels, images, captions) and audio pairings."""
    h = hashlib.sha256()
    for split, kw in (("train", dict(shuffle=True, seed=1, epoch=2)), ("val", {})):
        data = splits[split]
        for batch in data.batches(256, **kw):
            for k in ("y", "image", "text"):
                h.update(batch[k].contiguous().numpy().tobytes())
        for seed, epoch in ((0, 0), (1, 2)):
            h.update(data.pairing(seed, epoch)["audio"].numpy().tobytes())
    return h.hexdigest()


def parse(caption: str) -> list[int]:
    """The (digit, thickness, slant, size) a decoded caption names, read back with MNIST_WORDS."""
    text, row = f" {caption} ", {}
    for name in ("size", "slant", "thickness"):  # size first: "medium sized" holds thickness's "medium"
        hits = [(v, w) for v, group in enumerate(MNIST_WORDS[name]) for w in group if f" {w} " in text]
        assert len(hits) == 1, (caption, name, hits)
        row[name] = hits[0][0]
        text = text.replace(f" {hits[0][1]} ", " ")
    digits = [d for d in range(10) if f" {DIGIT_WORDS[d]} " in text or f" {d} " in text]
    assert len(digits) == 1, (caption, digits)
    return [digits[0], row["thickness"], row["slant"], row["size"]]


def decode(data, tokens) -> list[str]:
    return modalities.get("text").decode(tokens, data.info["vocabulary"])


def test_label_mode_batches_are_unchanged(label):
    assert digest(label) == LABEL_MODE_DIGEST
    assert load("mnist-trimodal", "val", captions="label") is label["val"]
    for split in ("train", "test"):
        data = label[split]  # the same data without the new fields: every old batch tensor, audio included
        plain = MultimodalDataset(data.name, split, data.y, data.aligned, data.pools, data.transforms, data.info)
        for a, b in zip(data.batches(500, shuffle=True, seed=2, epoch=1), plain.batches(500, shuffle=True, seed=2,
                                                                                            epoch=1)):
            assert list(a) == [*b, "attributes"] and all(torch.equal(a[k], b[k]) for k in b)


def test_attributes_are_the_measured_columns_in_both_modes(label, instance):
    measured = mnist_captions()
    for splits, text in ((label, ["digit"]), (instance, ["digit", "thickness", "slant", "size"])):
        for split in ("train", "test"):
            data = splits[split]
            assert torch.equal(data.attributes, measured[split].attributes)
            assert torch.equal(data.attributes[:, 0], data.y)
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(3 * 1_000_003 + 1))
            batch = next(data.batches(100, shuffle=True, seed=3, epoch=1))
            assert torch.equal(batch["attributes"], measured[split].attributes[order[:100]])
        assert data.info["attribute_names"] == ["digit", "thickness", "slant", "size"]
        assert data.info["attribute_values"][1:] == [["thin", "medium", "thick"], ["left", "upright", "right"],
                                                     ["small", "medium", "large"]]
        assert data.info["modality_attributes"] == {"image": ["digit", "thickness", "slant", "size"],
                                                    "audio": ["digit"], "text": text}


def test_instance_captions_name_the_image_attributes(instance):
    data = instance["val"]
    assert data.modalities == ("image", "audio", "text") and "text" not in data.pools
    assert data.choices["text"].shape == (500, CAPTIONS_PER_IMAGE, trimodal.INSTANCE_CAPTION_LENGTH)
    for batch in data.batches(250, seed=0, epoch=1):
        for caption, row in zip(decode(data, batch["text"]), batch["attributes"].tolist()):
            assert parse(caption) == row
    every = data.choices["text"].flatten(0, 1)  # all variants: no <unk>, every one ends with <eos>
    assert not (every == 3).any() and ((every == 2).sum(1) == 1).all()
    assert decode(data, every[:5]) == [c.lower().replace(",", " ,").replace(":", " :")
                                       for c in mnist_captions()["val"].captions[0]]


def test_images_of_one_digit_with_other_attributes_have_other_captions(instance):
    data = instance["train"]
    first = torch.nonzero(data.y == 7).flatten()[0]
    other = torch.nonzero((data.attributes[:, 0] == 7) & (data.attributes != data.attributes[first]).any(1))[0, 0]
    mine, theirs = (set(decode(data, data.choices["text"][i])) for i in (first, other))
    assert mine.isdisjoint(theirs)


def test_caption_variants_are_drawn_per_epoch_and_reproducible(instance):
    data = instance["train"]
    batches = {epoch: next(data.batches(400, seed=1, epoch=epoch)) for epoch in (0, 1)}
    again = next(data.batches(400, seed=1, epoch=1))
    assert all(torch.equal(again[k], batches[1][k]) for k in again)
    differ = (batches[0]["text"] != batches[1]["text"]).any(1)
    assert differ.float().mean() > 0.5 and torch.equal(batches[0]["image"], batches[1]["image"])
    variants = data.choices["text"][:400]
    for epoch, batch in batches.items():
        chosen = data.pairing(1, epoch)["text"][:400]
        assert torch.equal(batch["text"], variants[torch.arange(400), chosen])
    seen = torch.stack([data.pairing(0, epoch)["text"] for epoch in range(20)])
    assert ((seen == 0).any(0) & (seen == CAPTIONS_PER_IMAGE - 1).any(0)).float().mean() > 0.9


def test_resumed_epoch_sees_the_same_instance_batches(instance):
    data = instance["train"]
    full = list(data.batches(500, shuffle=True, seed=3, epoch=2, drop_last=True))
    resumed = list(data.batches(500, shuffle=True, seed=3, epoch=2, drop_last=True, start=5))
    assert len(resumed) == 3
    for a, b in zip(full[5:], resumed):
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_instance_vocabulary_extends_the_label_one(instance):
    vocabulary = instance["test"].info["vocabulary"]
    assert tuple(vocabulary[:len(trimodal.VOCABULARY)]) == trimodal.VOCABULARY
    assert len(set(vocabulary)) == len(vocabulary)
    tokens, _, texts = trimodal.captions()  # the label captions fit it too
    assert torch.equal(trimodal.encode(texts, vocabulary, trimodal.CAPTION_LENGTH), tokens)
    with pytest.raises(ValueError, match="caption 'a purple seven' has words outside"):
        trimodal.encode(["a seven", "a purple seven"], vocabulary, 8)
    with pytest.raises(ValueError, match="caption 'a thin seven' is 5 tokens long, more than the caption length 4"):
        trimodal.encode(["a seven", "a thin seven"], vocabulary, 4)


@pytest.mark.parametrize("bad", ["instances", "Label", None, True])
def test_unknown_captions_value_is_an_error_naming_it(bad):
    with pytest.raises(ValueError, match=rf"captions={bad!r}; accepted: 'label', 'instance'"):
        load("mnist-trimodal", "train", captions=bad)


def test_captions_is_a_run_config_option_and_fits_the_mfm_preset(instance, tmp_path):
    from mmgen import presets, runs
    from mmgen.eval.multimodal import evaluate
    config = runs.apply_overrides(presets.get("mfm-digits"), ["data.captions=instance"])
    assert config["data"] == {"name": "mnist-trimodal", "captions": "instance"}
    assert runs.dataset(config, "val") is instance["val"]
    with pytest.raises(ValueError, match=r"run config data: .*captions='words'; accepted: 'label', 'instance'"):
        runs.dataset(runs.apply_overrides(config, ["data.captions=words"]), "train")
    trainer = runs.prepare(config, str(tmp_path / "run"), device="cpu")  # one loss on batches with attributes
    assert trainer.model.names == ("image", "audio", "text")
    metrics = evaluate(trainer.model, instance["val"], batch_size=8, max_examples=8)
    assert metrics["examples"] == 8


def test_multimodal_dataset_choices_and_attributes_are_checked():
    y = torch.tensor([0, 1, 1])
    data = MultimodalDataset("x", "train", y, aligned={"a": torch.zeros(3, 2)},
                             choices={"b": torch.arange(12).view(3, 2, 2)}, attributes=torch.ones(3, 1).long())
    assert data.example_shapes() == {"a": (2,), "b": (2,)} and data.modalities == ("a", "b")
    batch = next(data.batches(3))
    assert list(batch) == ["a", "b", "y", "attributes"] and batch["attributes"].shape == (3, 1)
    with pytest.raises(ValueError, match=r"choices 'b' must be \[3, C >= 1, ...\], got \[2, 2\]"):
        MultimodalDataset("x", "train", y, choices={"b": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"attributes must be \[3, A\], got \[2, 1\]"):
        MultimodalDataset("x", "train", y, attributes=torch.zeros(2, 1).long())
    with pytest.raises(ValueError, match="not 'y' or 'attributes'"):
        MultimodalDataset("x", "train", y, aligned={"attributes": torch.zeros(3)})
