"""Captioned image datasets for text-to-image models, built offline and deterministically.

Every example has a few captions (one is drawn per batch, deterministically from seed, epoch and
batch) and integer attribute labels ``attributes[N, A]``, one column per attribute; the captions
say exactly what the labels say, in varied words, so classifiers of the attributes can judge
whether a generated image matches its caption.

- ``mnist-captions``: the 5,000 MNIST images of ``mnist`` (intensities in [0, 1], same 4,000 / 500 /
  500 split) with attributes measured from each image:

  - ``digit``: the label.
  - ``thickness`` (thin / medium / thick): mean stroke width ``2 * ink area / ink perimeter`` of
    the image thresholded at 0.5, cut at its terciles over all 5,000 images.
  - ``slant`` (left / upright / right): the shear ``-mu11 / mu02`` of the intensity moments (how
    far x moves right per pixel up), cut at its terciles over all 5,000 images.
  - ``size`` (small / medium / large): the ink bounding-box area (ties, common since it is a whole
    number of pixels, ordered by the mean intensity), cut at the terciles of the images of the same
    digit (MNIST digits are all scaled to the same height, so a "large 1" is a wide one).

  Each attribute is a function of the image alone, so :class:`DigitMeasure` (cuts fitted on real
  images) judges it exactly, given the digit.

- ``shapes``: procedural 32x32 RGB images (or 64x64 with ``size=64``) of one anti-aliased shape on
  black: ``shape`` (circle, square, triangle, diamond), ``colour`` (red, green, blue, yellow,
  magenta, cyan), ``size`` (small, large) and ``position`` (top left, top right, bottom left,
  bottom right), with a little jitter of radius, position and colour. Captions are compositional,
  e.g. "a small red circle at the top left". The (shape, colour) pairs in :data:`HELDOUT` never
  occur in train / val / test (8,000 / 1,000 / 1,000 images); the split ``heldout`` (1,000 images)
  holds only them, to test generalization to unseen combinations. The split ``judge`` (8,000 images,
  from a generator stream of its own, so the other splits do not depend on it) holds every pair,
  the held-out ones included: it trains the attribute classifier that judges generated images
  (:mod:`mmgen.eval.attributes`), which must read an unseen pair as well as a seen one. Train
  models on ``train`` only.
"""
from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass, field

import torch

from mmgen.data.datasets import Dataset, mnist

CAPTIONS_PER_IMAGE = 5


@dataclass(frozen=True)
class CaptionWriter:
    """Writes a caption for a row of attribute values: a random template filled with a random
    synonym of each value (``digit_column``: the attribute written as a digit word or numeral)."""

    words: dict
    templates: tuple[str, ...]
    names: tuple[str, ...]
    digit_column: int | None = None

    def write(self, row: list[int], rng: random.Random) -> str:
        fill = {name: rng.choice(self.words[name][value]) for name, value in zip(self.names, row)
                if name in self.words}
        if self.digit_column is not None:
            digit = row[self.digit_column]
            fill["digit"] = rng.choice((DIGIT_WORDS[digit], str(digit)))
        return rng.choice(self.templates).format(**fill)


@dataclass
class CaptionedDataset(Dataset):
    """A :class:`Dataset` whose batches also carry ``captions`` (list of str) and ``attributes``
    (LongTensor[B, A]). ``attribute_values[a]`` names the values of attribute ``attribute_names[a]``.

    With a ``writer`` the batches also carry ``negative_captions``, hard negatives for matching
    losses ("a small red circle" against "a small red square"), drawn deterministically from (seed,
    epoch, batch). ``negatives="one"``: for each example a caption of its attributes with one
    attribute (drawn uniformly) changed to another value (drawn uniformly), B captions in batch
    order. ``negatives="each"``: for each attribute in turn, every example's caption with that
    attribute changed, A * B captions (attribute-major), so every example is set against a
    change of each of its attributes in every batch."""

    captions: list[tuple[str, ...]] = field(default_factory=list)
    attributes: torch.Tensor | None = None
    attribute_names: tuple[str, ...] = ()
    attribute_values: tuple[tuple[str, ...], ...] = ()
    writer: CaptionWriter | None = None
    negatives: str = "one"

    def __post_init__(self):
        check_negatives(self.negatives)

    def extras(self, idx: torch.Tensor, *, seed: int, epoch: int, batch: int) -> dict:
        key = seed * 15_485_863 + epoch * 32_452_843 + batch
        choice = torch.randint(CAPTIONS_PER_IMAGE, (len(idx),), generator=torch.Generator().manual_seed(key)).tolist()
        out = {"captions": [self.captions[i][c] for i, c in zip(idx.tolist(), choice)],
               "attributes": self.attributes[idx]}
        if self.writer is not None:
            out["negative_captions"] = self.negative_captions(self.attributes[idx], random.Random(key))
        return out

    def negative_captions(self, attributes: torch.Tensor, rng: random.Random) -> list[str]:
        """Captions of the rows of ``attributes`` [B, A] with one attribute changed: one per row
        (``negatives="one"``), or one per attribute and row, attribute-major (``"each"``)."""
        rows = attributes.tolist()
        changes = [(row, None) for row in rows] if self.negatives == "one" else \
            [(row, a) for a in range(attributes.shape[1]) for row in rows]
        out = []
        for row, a in changes:
            row = list(row)
            a = rng.randrange(len(row)) if a is None else a
            row[a] = rng.choice([v for v in range(len(self.attribute_values[a])) if v != row[a]])
            out.append(self.writer.write(row, rng))
        return out


NEGATIVES = ("one", "each")


def check_negatives(negatives: str) -> None:
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(map(repr, NEGATIVES))} (hard-negative captions "
                         f"per example: one with a random attribute changed, or one per attribute), got {negatives!r}")


# -- words ---------------------------------------------------------------------------------------
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MNIST_WORDS = {
    "thickness": (("thin", "fine", "light"), ("medium", "regular", "normal"), ("thick", "bold", "heavy")),
    "slant": (("slanted to the left", "leaning left", "tilted left"),
              ("upright", "standing straight", "not slanted"),
              ("slanted to the right", "leaning right", "tilted right")),
    "size": (("small", "little", "tiny"), ("medium sized", "normal sized", "mid sized"),
             ("large", "big", "wide")),
}
MNIST_TEMPLATES = (
    "a {size} {thickness} {digit} {slant}",
    "the digit {digit}, {size}, with {thickness} strokes, {slant}",
    "a {thickness} {digit} that is {size} and {slant}",
    "{slant}, a {size} handwritten {digit} in {thickness} ink",
    "handwritten {digit}: {size}, {thickness}, {slant}",
)

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
RGB = ((0.92, 0.12, 0.1), (0.12, 0.8, 0.15), (0.15, 0.3, 0.95), (0.95, 0.88, 0.1), (0.9, 0.15, 0.85),
       (0.1, 0.85, 0.9))
SHAPE_SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
HELDOUT = (("circle", "green"), ("square", "magenta"), ("triangle", "blue"), ("diamond", "yellow"))
JUDGE_STREAM = 1_000_003  # shapes' judge split is drawn by a generator seeded JUDGE_STREAM + seed
SHAPES_WORDS = {
    "shape": tuple((s,) for s in SHAPES),
    "colour": tuple((c,) for c in COLOURS),
    "size": (("small", "little", "tiny"), ("large", "big")),
    "position": (("top left", "upper left"), ("top right", "upper right"),
                 ("bottom left", "lower left"), ("bottom right", "lower right")),
}
SHAPES_TEMPLATES = (
    "a {size} {colour} {shape} at the {position}",
    "a {colour} {shape}, {size}, in the {position} corner",
    "{position}: a {size} {colour} {shape}",
    "there is a {size} {colour} {shape} in the {position}",
    "a {shape} that is {colour} and {size}, placed at the {position}",
)


def _write_captions(writer: CaptionWriter, attrs: torch.Tensor, seed: int) -> list[tuple[str, ...]]:
    """CAPTIONS_PER_IMAGE captions per row of ``attrs``."""
    rng = random.Random(seed)
    return [tuple(writer.write(row, rng) for _ in range(CAPTIONS_PER_IMAGE)) for row in attrs.tolist()]


def corpus(name: str) -> list[str]:
    """Every phrase the captions of dataset ``name`` are made of (to build a tokenizer vocabulary
    that knows all their words)."""
    if name == "mnist-captions":
        words, templates = MNIST_WORDS, MNIST_TEMPLATES
        extra = list(DIGIT_WORDS) + [str(d) for d in range(10)]
    elif name == "shapes":
        words, templates, extra = SHAPES_WORDS, SHAPES_TEMPLATES, []
    else:
        raise ValueError(f"no caption corpus for dataset {name!r}; accepted: mnist-captions, shapes")
    phrases = [t.replace("{", "").replace("}", "") for t in templates]
    return phrases + extra + [w for groups in words.values() for group in groups for w in group]


def example_prompts(name: str) -> list[str]:
    """Prompts for sample grids of a model trained on dataset ``name``."""
    if name == "mnist-captions":
        return [f"a medium sized regular {w} standing straight" for w in DIGIT_WORDS]
    if name == "shapes":
        return ["a small red circle at the top left", "a large blue square at the bottom right",
                "a large yellow triangle at the top right", "a small cyan diamond at the bottom left",
                "a large magenta circle at the bottom right", "a small green square at the top left",
                "a large red triangle at the bottom left", "a small blue diamond at the top right"]
    raise ValueError(f"no example prompts for dataset {name!r}; accepted: mnist-captions, shapes")


# -- MNIST with measured attributes ------------------------------------------------------------
def _terciles(values: torch.Tensor) -> torch.Tensor:
    """0, 1, 2 for the lower, middle and upper third of ``values`` (ties broken by position)."""
    rank = values.argsort(stable=True).argsort()
    return rank * 3 // len(values)


def measure_digits(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw stroke width (pixels), slant (shear) and bounding-box area (pixels, plus the mean
    intensity, which orders equal areas) of images [N, 1, H, W]."""
    img = x[:, 0].double()
    ink = (img > 0.5).double()
    padded = torch.nn.functional.pad(ink, (1, 1, 1, 1))
    edges = ((padded[:, 1:, :] - padded[:, :-1, :]).abs().sum((1, 2))
             + (padded[:, :, 1:] - padded[:, :, :-1]).abs().sum((1, 2)))
    width = 2 * ink.sum((1, 2)) / edges.clamp(min=1)
    h, w = img.shape[1:]
    ys = torch.arange(h, dtype=torch.float64).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float64).view(1, 1, w)
    mass = img.sum((1, 2)).clamp(min=1e-8)
    cy = (img * ys).sum((1, 2)) / mass
    cx = (img * xs).sum((1, 2)) / mass
    dy, dx = ys - cy.view(-1, 1, 1), xs - cx.view(-1, 1, 1)
    mu11, mu02 = (img * dx * dy).sum((1, 2)), (img * dy * dy).sum((1, 2)).clamp(min=1e-8)
    rows, cols = ink.amax(2) > 0, ink.amax(1) > 0
    # the box area is a whole number shared by many images: the ink fraction (< 1) orders the ties,
    # so that images of one measurement never straddle a cut
    size = _extent(rows) * _extent(cols) + img.mean((1, 2))
    return {"thickness": width, "slant": -mu11 / mu02, "size": size}


def _tercile_cuts(values: torch.Tensor) -> torch.Tensor:
    """The two values [2] that cut ``values`` where :func:`_terciles` does: each halfway between the
    last value of one third (in sorted order) and the first of the next."""
    if len(values) < 3:
        raise ValueError(f"terciles need at least 3 values, got {len(values)}")
    ordered, n = values.sort().values, len(values)
    firsts = [-(-n // 3), -(-2 * n // 3)]  # the first sorted position of the middle and the upper third
    return torch.stack([(ordered[i - 1] + ordered[i]) / 2 for i in firsts])


class DigitMeasure:
    """A judge of ``mnist-captions``' measured attributes thickness, slant and size: the measurements
    of :func:`measure_digits` cut where the terciles of real images cut them (:meth:`fit`; the size
    cuts per digit). It needs the digit of each image (the size is judged against that digit's
    terciles), which a classifier supplies."""

    names = ("thickness", "slant", "size")
    needs = "digit"

    def __init__(self, cuts: dict[str, torch.Tensor]):
        self.cuts = cuts

    @classmethod
    def fit(cls, images: torch.Tensor, digits: torch.Tensor) -> "DigitMeasure":
        """The cuts of real ``images`` [N, 1, H, W] (intensities in [0, 1]) with labels ``digits`` [N]."""
        raw = measure_digits(images)
        missing = [d for d in range(10) if int((digits == d).sum()) < 3]
        if missing:
            raise ValueError(f"fitting the digit measure needs at least 3 images of every digit; "
                             f"too few of {missing}")
        cuts = {a: _tercile_cuts(raw[a]) for a in ("thickness", "slant")}
        cuts["size"] = torch.stack([_tercile_cuts(raw["size"][digits == d]) for d in range(10)])
        return cls(cuts)

    def predict(self, images: torch.Tensor, digits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attribute name -> LongTensor [N] of values 0, 1, 2 for ``images`` whose digits are ``digits``."""
        raw = measure_digits(images.detach().float().cpu())
        digits = digits.detach().cpu().long()
        out = {a: (raw[a].unsqueeze(1) > self.cuts[a]).sum(1) for a in ("thickness", "slant")}
        out["size"] = (raw["size"].unsqueeze(1) > self.cuts["size"][digits]).sum(1)
        return {a: v.to(images.device) for a, v in out.items()}


#: The measures a dataset can name in ``info["attribute_measures"]`` (modality -> name).
MEASURES = {"mnist-digits": DigitMeasure}


def _extent(inked: torch.Tensor) -> torch.Tensor:
    """Pixels from the first to the last True of each row of a bool [N, L] (L when none is)."""
    first, last = inked.int().argmax(1), inked.flip(1).int().argmax(1)
    return (inked.shape[1] - last - first).double()


@functools.lru_cache(maxsize=None)
def mnist_captions(seed: int = 0, negatives: str = "one") -> dict[str, CaptionedDataset]:
    """MNIST-5k with attributes digit, thickness, slant, size and captions drawn with ``seed``;
    ``negatives``: the hard-negative captions of each batch (see :class:`CaptionedDataset`)."""
    check_negatives(negatives)
    base = mnist(binarize=None)
    x = torch.cat([base[s].x for s in ("train", "val", "test")])
    y = torch.cat([base[s].y for s in ("train", "val", "test")])
    raw = measure_digits(x)
    size = torch.zeros_like(y)
    for d in range(10):
        size[y == d] = _terciles(raw["size"][y == d])
    attrs = torch.stack([y, _terciles(raw["thickness"]), _terciles(raw["slant"]), size], 1)
    names = ("digit", "thickness", "slant", "size")
    values = (tuple(map(str, range(10))), ("thin", "medium", "thick"), ("left", "upright", "right"),
              ("small", "medium", "large"))
    writer = CaptionWriter(MNIST_WORDS, MNIST_TEMPLATES, names, digit_column=0)
    captions = _write_captions(writer, attrs, seed)
    out, lo = {}, 0
    for split in ("train", "val", "test"):
        hi = lo + len(base[split])
        out[split] = CaptionedDataset("mnist-captions", split, base[split].x, base[split].y,
                                      captions=captions[lo:hi], attributes=attrs[lo:hi],
                                      attribute_names=names, attribute_values=values, writer=writer,
                                      negatives=negatives)
        lo = hi
    return out


# -- procedural shapes ---------------------------------------------------------------------------
def _distance(shape: int, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (pixels, negative inside) to a shape of radius r centred at the origin."""
    if SHAPES[shape] == "circle":
        return torch.sqrt(dx ** 2 + dy ** 2) - r
    if SHAPES[shape] == "square":
        return torch.maximum(dx.abs(), dy.abs()) - 0.8 * r
    if SHAPES[shape] == "diamond":
        return (dx.abs() + dy.abs() - r) / math.sqrt(2)
    # equilateral triangle pointing up (y grows downwards), circumradius 1.2 r, its bounding box
    # centred: the largest distance to the lines of its base and its two sides
    r = 1.2 * r
    dy = dy + r / 4
    base = dy - r / 2
    sides = [math.sqrt(3) / 2 * sx * dx - 0.5 * dy - r / 2 for sx in (1, -1)]
    return torch.maximum(base, torch.maximum(*sides))


def render_shapes(attrs: torch.Tensor, image_size: int = 32, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images [N, 3, S, S] in [0, 1] for rows (shape, colour, size, position) of ``attrs``."""
    n, scale = len(attrs), image_size / 32
    jitter = torch.rand(n, 5, generator=generator) * 2 - 1
    radius = torch.tensor([4.5, 7.5])[attrs[:, 2]] + 0.5 * jitter[:, 0]
    quadrant_x = torch.tensor([8.0, 24.0, 8.0, 24.0])[attrs[:, 3]]
    quadrant_y = torch.tensor([8.0, 8.0, 24.0, 24.0])[attrs[:, 3]]
    cx, cy = quadrant_x + 1.5 * jitter[:, 1], quadrant_y + 1.5 * jitter[:, 2]
    colour = torch.tensor(RGB)[attrs[:, 1]] + 0.06 * jitter[:, 3:4]
    coords = (torch.arange(image_size, dtype=torch.float32) + 0.5) / scale
    images = torch.zeros(n, 3, image_size, image_size)
    for s in range(len(SHAPES)):
        rows = torch.nonzero(attrs[:, 0] == s).flatten()
        dx = coords.view(1, 1, -1) - cx[rows].view(-1, 1, 1)
        dy = coords.view(1, -1, 1) - cy[rows].view(-1, 1, 1)
        coverage = (0.5 - _distance(s, dx, dy, radius[rows].view(-1, 1, 1)) * scale).clamp(0, 1)
        images[rows] = coverage.unsqueeze(1) * colour[rows].clamp(0, 1).view(-1, 3, 1, 1)
    return images


def _shape_attributes(pairs: list[tuple[int, int]], n: int, generator: torch.Generator) -> torch.Tensor:
    pair = torch.tensor(pairs)[torch.randint(len(pairs), (n,), generator=generator)]
    size = torch.randint(len(SHAPE_SIZES), (n, 1), generator=generator)
    position = torch.randint(len(POSITIONS), (n, 1), generator=generator)
    return torch.cat([pair, size, position], 1)


@functools.lru_cache(maxsize=None)
def shapes(seed: int = 0, size: int = 32, negatives: str = "one") -> dict[str, CaptionedDataset]:
    """Procedural shapes; (shape, colour) pairs of HELDOUT only in the split "heldout" (and in
    "judge", every pair, for the attribute classifier); ``negatives``: the hard-negative captions
    of each batch (see :class:`CaptionedDataset`)."""
    if size not in (32, 64):
        raise ValueError(f"shapes are rendered at 32 or 64 pixels, got size={size!r}")
    check_negatives(negatives)
    heldout = {(SHAPES.index(s), COLOURS.index(c)) for s, c in HELDOUT}
    every = list(itertools.product(range(len(SHAPES)), range(len(COLOURS))))
    seen = [p for p in every if p not in heldout]
    gen = torch.Generator().manual_seed(seed)
    judge_gen = torch.Generator().manual_seed(JUDGE_STREAM + seed)
    names = ("shape", "colour", "size", "position")
    values = (SHAPES, COLOURS, SHAPE_SIZES, POSITIONS)
    writer = CaptionWriter(SHAPES_WORDS, SHAPES_TEMPLATES, names)
    out = {}
    splits = (("train", 8000, seen, gen), ("val", 1000, seen, gen), ("test", 1000, seen, gen),
              ("heldout", 1000, sorted(heldout), gen), ("judge", 8000, every, judge_gen))
    for i, (split, n, pairs, stream) in enumerate(splits):
        attrs = _shape_attributes(pairs, n, stream)
        images = render_shapes(attrs, size, stream)
        captions = _write_captions(writer, attrs, seed * 31 + i)
        out[split] = CaptionedDataset("shapes", split, images, attrs[:, 0].clone(), captions=captions, writer=writer,
                                      attributes=attrs, attribute_names=names, attribute_values=values,
                                      negatives=negatives)
    return out
