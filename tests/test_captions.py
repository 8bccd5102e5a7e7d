import itertools
import re

import pytest
import torch

from mmgen.data import load
from mmgen.data import captions as cap

pytest.importorskip("mlxtend")


def words_of(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def mentions(caption: str, phrase: str) -> bool:
    """``phrase`` occurs in ``caption`` as whole words."""
    return re.search(rf"\b{re.escape(phrase)}\b", caption) is not None


@pytest.fixture(scope="module")
def mnist_train():
    return load("mnist-captions", "train")


@pytest.fixture(scope="module")
def shapes_data():
    return {split: load("shapes", split) for split in ("train", "val", "test", "heldout")}


def test_mnist_captions_keep_the_mnist_split_and_name_the_digit(mnist_train):
    plain = load("mnist", "train", binarize=None)
    assert torch.equal(mnist_train.x, plain.x) and torch.equal(mnist_train.y, plain.y)
    assert torch.equal(mnist_train.attributes[:, 0], plain.y)
    assert mnist_train.attribute_names == ("digit", "thickness", "slant", "size")
    for row, texts in zip(mnist_train.attributes[:500].tolist(), mnist_train.captions[:500]):
        digit = row[0]
        for text in texts:
            named = {w for w in words_of(text) if w in cap.DIGIT_WORDS or w.isdigit()}
            assert named in ({cap.DIGIT_WORDS[digit]}, {str(digit)}), (text, digit)
            for attribute, value in zip(("thickness", "slant", "size"), row[1:]):
                said = [any(mentions(text, w) for w in synonyms) for synonyms in cap.MNIST_WORDS[attribute]]
                assert said[value], (text, attribute, value)


def test_mnist_attribute_buckets_are_balanced_thirds(mnist_train):
    for column in range(1, 4):
        counts = torch.bincount(mnist_train.attributes[:, column], minlength=3)
        assert counts.min() > 0.25 * len(mnist_train), (mnist_train.attribute_names[column], counts)


def test_measured_attributes_on_drawn_strokes():
    canvas = torch.zeros(4, 1, 28, 28)
    canvas[0, 0, 4:24, 13:15] = 1          # thin upright bar
    canvas[1, 0, 4:24, 11:17] = 1          # thick upright bar
    for row in range(4, 24):               # bar whose top leans right: x grows as y falls
        shift = (24 - row) // 3
        canvas[2, 0, row, 10 + shift:12 + shift] = 1
    canvas[3, 0, 10:14, 12:16] = 1         # small blob
    m = cap.measure_digits(canvas)
    assert m["thickness"][1] > 2 * m["thickness"][0]
    assert m["slant"][2] > 0.2 and abs(m["slant"][0]) < 1e-6
    # the box area in pixels plus the mean intensity (< 1), which orders equal areas
    assert m["size"][3] == 16 + 16 / 784 and m["size"][0] == 40 + 40 / 784


def test_sizes_of_equal_measure_share_a_bucket(mnist_train):
    raw = cap.measure_digits(mnist_train.x)["size"]
    assert raw.unique().numel() > 0.5 * len(raw)  # the whole-pixel box areas alone take 44 values
    for d in range(10):
        rows = mnist_train.y == d
        sizes, buckets = raw[rows], mnist_train.attributes[rows, 3]
        # buckets follow the measure: every small one below every medium one below every large one
        assert sizes[buckets == 0].max() < sizes[buckets == 1].min() <= sizes[buckets == 1].max() < sizes[buckets == 2].min()


def test_digit_measure_fitted_on_train_reads_the_attributes_of_test_images():
    data = cap.mnist_captions()
    measure = cap.DigitMeasure.fit(data["train"].x, data["train"].y)
    test = data["test"]
    predicted = measure.predict(test.x, test.y)
    for column, name in enumerate(("thickness", "slant", "size"), start=1):
        # cuts from 4,000 images against terciles of all 5,000: only images near a cut may differ
        assert (predicted[name] == test.attributes[:, column]).float().mean() > 0.96, name
    shuffled = measure.predict(test.x.flip(0), test.y)  # another image's measure: about chance
    assert (shuffled["thickness"] == test.attributes[:, 1]).float().mean() < 0.5
    with pytest.raises(ValueError, match="every digit"):
        cap.DigitMeasure.fit(test.x[:20], test.y[:20])


def test_thick_captions_have_more_ink_per_stroke_than_thin(mnist_train):
    ink = (mnist_train.x > 0.5).float().flatten(1).sum(1)
    thickness = mnist_train.attributes[:, 1]
    assert ink[thickness == 2].mean() > 1.3 * ink[thickness == 0].mean()


def test_captions_are_deterministic_per_seed():
    first, again, other = (cap.mnist_captions.__wrapped__(seed) for seed in (0, 0, 1))
    assert first["test"].captions == again["test"].captions
    assert first["test"].captions != other["test"].captions
    assert torch.equal(first["test"].attributes, other["test"].attributes)  # measured, not drawn
    a, b = cap.shapes.__wrapped__(3), cap.shapes.__wrapped__(3)
    assert torch.equal(a["val"].x, b["val"].x) and a["val"].captions == b["val"].captions


def test_batches_carry_matching_captions_and_attributes(mnist_train):
    batch = next(mnist_train.batches(16, shuffle=True, seed=2, epoch=1))
    again = next(mnist_train.batches(16, shuffle=True, seed=2, epoch=1))
    assert batch["captions"] == again["captions"]
    assert batch["attributes"].shape == (16, 4) and torch.equal(batch["attributes"][:, 0], batch["y"])
    for text, digit in zip(batch["captions"], batch["y"].tolist()):
        assert cap.DIGIT_WORDS[digit] in words_of(text) or str(digit) in words_of(text)
    other_epoch = next(mnist_train.batches(16, shuffle=True, seed=2, epoch=2))
    assert other_epoch["captions"] != batch["captions"]


def test_shapes_captions_say_shape_colour_size_position(shapes_data):
    data = shapes_data["train"]
    assert data.x.shape == (8000, 3, 32, 32) and 0 <= data.x.min() and data.x.max() <= 1
    for row, texts in zip(data.attributes[:300].tolist(), data.captions[:300]):
        for text in texts:
            for attribute, value in zip(data.attribute_names, row):
                said = [any(mentions(text, w) for w in synonyms) for synonyms in cap.SHAPES_WORDS[attribute]]
                assert said[value] and sum(said) == 1, (text, attribute, value)


def said_values(data, text: str) -> list[int]:
    """The value of each attribute that a shapes caption names."""
    values = []
    for attribute in data.attribute_names:
        said = [any(mentions(text, w) for w in synonyms) for synonyms in cap.SHAPES_WORDS[attribute]]
        assert sum(said) == 1, (text, attribute)
        values.append(said.index(True))
    return values


def test_negative_captions_change_exactly_one_attribute(shapes_data, mnist_train):
    data = shapes_data["train"]
    batch = next(data.batches(64, shuffle=True, seed=3, epoch=1))
    assert batch["negative_captions"] == next(data.batches(64, shuffle=True, seed=3, epoch=1))["negative_captions"]
    changed = []
    for row, text in zip(batch["attributes"].tolist(), batch["negative_captions"]):
        differs = [a for a, (v, w) in enumerate(zip(row, said_values(data, text))) if v != w]
        assert len(differs) == 1, (row, text)
        changed += differs
    assert set(changed) == set(range(4))                       # every attribute gets changed
    digits = next(mnist_train.batches(64, shuffle=True, seed=3))
    assert len(digits["negative_captions"]) == 64
    assert not set(digits["negative_captions"]) & set(digits["captions"][:1])


def test_negatives_each_changes_every_attribute_of_every_example(shapes_data):
    data = load("shapes", "train", negatives="each")
    assert torch.equal(data.x, shapes_data["train"].x) and data.captions == shapes_data["train"].captions
    batch = next(data.batches(16, shuffle=True, seed=3, epoch=1))
    negatives = batch["negative_captions"]
    assert len(negatives) == 4 * 16                                 # attribute-major: [A * B]
    for k, text in enumerate(negatives):
        row = batch["attributes"][k % 16].tolist()
        differs = [a for a, (v, w) in enumerate(zip(row, said_values(data, text))) if v != w]
        assert differs == [k // 16], (row, text)
    assert negatives == next(data.batches(16, shuffle=True, seed=3, epoch=1))["negative_captions"]
    assert len(next(load("mnist-captions", "val", negatives="each").batches(8))["negative_captions"]) == 32


@pytest.mark.parametrize("name", ["shapes", "mnist-captions"])
def test_unknown_negatives_value_is_named(name):
    with pytest.raises(ValueError, match=r"negatives must be one of 'one', 'each'.*got 'all'"):
        load(name, "train", negatives="all")


def test_shapes_pixels_show_the_attributes(shapes_data):
    data = shapes_data["test"]
    ink = data.x.sum(1) > 0.3                                         # [N, 32, 32]
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cy = (ink * ys).flatten(1).sum(1) / ink.flatten(1).sum(1)
    cx = (ink * xs).flatten(1).sum(1) / ink.flatten(1).sum(1)
    position = data.attributes[:, 3]
    assert ((cx >= 16) == torch.isin(position, torch.tensor([1, 3]))).all()     # right
    assert ((cy >= 16) == torch.isin(position, torch.tensor([2, 3]))).all()     # bottom
    area = ink.flatten(1).sum(1).float()
    for shape in range(len(cap.SHAPES)):
        of_shape = data.attributes[:, 0] == shape
        large, small = of_shape & (data.attributes[:, 2] == 1), of_shape & (data.attributes[:, 2] == 0)
        assert area[large].min() > area[small].max(), cap.SHAPES[shape]
    brightest = data.x.flatten(2).amax(2)                            # [N, 3] close to the named colour
    target = torch.tensor(cap.RGB)[data.attributes[:, 1]]
    assert (brightest - target).abs().max() < 0.1


def test_heldout_pairs_only_in_the_heldout_split(shapes_data):
    heldout = {(cap.SHAPES.index(s), cap.COLOURS.index(c)) for s, c in cap.HELDOUT}
    for split, data in shapes_data.items():
        pairs = {tuple(p) for p in data.attributes[:, :2].tolist()}
        if split == "heldout":
            assert pairs == heldout
        else:
            assert not pairs & heldout and len(pairs) == 24 - len(heldout)
    # every shape and every colour alone is still seen in training
    seen = shapes_data["train"].attributes
    assert set(seen[:, 0].tolist()) == set(range(4)) and set(seen[:, 1].tolist()) == set(range(6))


def test_judge_split_holds_every_pair_and_leaves_the_other_splits_alone(shapes_data):
    judge = load("shapes", "judge")
    pairs = judge.attributes[:, 0] * len(cap.COLOURS) + judge.attributes[:, 1]
    counts = torch.bincount(pairs, minlength=24)
    assert len(judge) == 8000 and counts.min() > 0.8 * 8000 / 24, counts     # every pair, about as often
    assert judge.captions and len(judge.captions) == 8000
    # the other splits are the draws of the generator seeded 0 alone, as before the judge split existed
    heldout = {(cap.SHAPES.index(s), cap.COLOURS.index(c)) for s, c in cap.HELDOUT}
    seen = [p for p in itertools.product(range(4), range(6)) if p not in heldout]
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 8000), ("val", 1000)):
        attrs = cap._shape_attributes(seen, n, gen)
        assert torch.equal(attrs, shapes_data[split].attributes)
        assert torch.equal(cap.render_shapes(attrs, 32, gen), shapes_data[split].x)


def test_load_names_the_accepted_splits():
    with pytest.raises(ValueError, match="unknown split 'heldout'; available: train, val, test"):
        load("mnist-captions", "heldout")
    with pytest.raises(ValueError, match="rendered at 32 or 64 pixels, got size=48"):
        load("shapes", "train", size=48)
    with pytest.raises(ValueError, match="no caption corpus for dataset 'mnist'"):
        cap.corpus("mnist")
    assert load("shapes", "heldout", size=64).x.shape == (1000, 3, 64, 64)


def test_caption_mean_ceiling_script(tmp_path):
    """benchmarks/caption_mean_ceiling.py: the measure reads real val images' own captions (m = 1), and
    averaging images of one caption shrinks the size the measure reads (so the ceiling falls)."""
    import importlib.util
    import json
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                        "caption_mean_ceiling.py")
    spec = importlib.util.spec_from_file_location("caption_mean_ceiling", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "ceiling.json"
    script.main(["--m", "1", "8", "--seeds", "0", "--splits", "val", "--out", str(out)])
    rows = {r["m"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows[1]["all"] > 0.95 and rows[1]["size"] > 0.95
    assert rows[8]["size"] < rows[1]["size"] - 0.15
    with pytest.raises(SystemExit):
        script.main(["--m", "0", "--out", str(out)])
