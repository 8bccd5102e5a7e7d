"""Sentence datasets of packaged text corpora, as padded token ids (nothing downloads).

- ``lee``: the news sentences of the Lee corpus that gensim ships for its tests
  (``gensim/test/test_data/lee_background.cor``, 300 Australian news articles, one per line).
  Articles are cut into sentences after ``.``, ``!`` or ``?`` (a closing quote stays with its
  sentence) before a capital, digit, quote or bracket; a repeated sentence is kept once and
  sentences of more than ``max_length`` tokens are dropped. Fixed split by sentence (permutation
  seed 0): 10% val, 10% test, the rest train (1,921 / 240 / 240 by default). The vocabulary is
  built on the train split only (words seen ``min_count`` times, the rest become ``<unk>``), with
  the text modality's lowercasing word tokenizer (``mmgen.modalities.get("text")``).
  ``x`` is ``int64 [N, max_length + 2]``: ``<bos> tokens <eos>`` right-padded with ``<pad>`` (id 0);
  ``Dataset.vocab`` holds the tokens of the ids.
"""
from __future__ import annotations

import functools
import re

import torch
import torch.nn.functional as F

LEE_FILE = "lee_background.cor"
HELD_OUT_FRACTION = 0.1  # of the sentences, for each of val and test

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+(?=[\"'(]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """The sentences of a paragraph (see the module docs for the rule)."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


def _text():
    """The text modality's handler; an error names its plugin when none is installed."""
    from mmgen import modalities
    return modalities.get("text")


def lee_sentences() -> list[str]:
    """All sentences of gensim's ``lee_background.cor``, in corpus order."""
    try:
        from gensim.test.utils import datapath
    except ImportError as exc:
        raise ImportError("the lee dataset needs gensim (it ships the corpus): pip install gensim") from exc
    with open(datapath(LEE_FILE), encoding="utf-8") as f:
        return [s for line in f for s in split_sentences(line)]


def sentence_splits(name: str, sentences: list[str], max_length: int, min_count: int) -> dict:
    """Train/val/test :class:`mmgen.data.Dataset` of token ids from ``sentences`` (see module docs)."""
    from mmgen.data.datasets import SPLITS, Dataset
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"{name}: max_length must be an int >= 1 (tokens per sentence), got {max_length!r}")
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"{name}: min_count must be an int >= 1, got {min_count!r}")
    text = _text()
    counter = text.tokenizer(text.specials)  # every word is <unk>: counts tokens
    unique = list(dict.fromkeys(sentences))  # a repeated sentence must not sit in two splits
    kept = [s for s in unique if len(counter.encode(s, add_special=False)) <= max_length]
    held_out = round(HELD_OUT_FRACTION * len(kept))
    if held_out < 1:
        raise ValueError(f"{name}: only {len(kept)} sentences have <= {max_length} tokens; too few to split")
    order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(0)).tolist()
    sizes = (len(kept) - 2 * held_out, held_out, held_out)
    parts, lo = {}, 0
    for split, size in zip(SPLITS, sizes):
        parts[split] = [kept[i] for i in order[lo:lo + size]]
        lo += size
    tokenizer = text.tokenizer(text.vocabulary(parts["train"], min_count))
    width = max_length + 2
    out = {}
    for split, texts in parts.items():
        x = tokenizer.batch_encode(texts)
        x = F.pad(x, (0, width - x.shape[1]), value=tokenizer.pad_id)
        out[split] = Dataset(name, split, x, vocab=tokenizer.vocab)
    return out


@functools.lru_cache(maxsize=None)
def lee(max_length: int = 40, min_count: int = 2) -> dict:
    """gensim's Lee news corpus as sentences of at most ``max_length`` tokens (see module docs)."""
    return sentence_splits("lee", lee_sentences(), max_length, min_count)
