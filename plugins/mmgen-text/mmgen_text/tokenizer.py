"""Word-level tokenizer with a vocabulary built from a corpus."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_WORD = re.compile(r"\w+|[^\w\s]")


class WordTokenizer:
    """Splits text into words and punctuation; ids 0-3 are <pad>, <bos>, <eos>, <unk>."""

    def __init__(self, vocab: list[str], lowercase: bool = True):
        if list(vocab[:len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a vocabulary must start with the special tokens {list(SPECIALS)}, "
                             f"got {list(vocab[:len(SPECIALS)])}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("the vocabulary has repeated tokens")
        self.vocab = list(vocab)
        self.lowercase = lowercase
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(len(SPECIALS))

    @classmethod
    def from_corpus(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None,
                    lowercase: bool = True) -> "WordTokenizer":
        """Vocabulary of the words seen at least ``min_freq`` times, most frequent first."""
        counts = Counter(word for text in texts for word in cls._split(text, lowercase))
        words = sorted((w for w, n in counts.items() if n >= min_freq and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + words[:max_size], lowercase)

    @staticmethod
    def _split(text: str, lowercase: bool) -> list[str]:
        return _WORD.findall(text.lower() if lowercase else text)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        ids = [self.index.get(word, self.unk_id) for word in self._split(text, self.lowercase)]
        return [self.bos_id, *ids, self.eos_id] if add_special else ids

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Words joined by spaces; with ``skip_special`` it drops <pad>/<bos>, stops at <eos>
        and keeps <unk>."""
        words = []
        for i in (int(i) for i in ids):
            if skip_special and i == self.eos_id:
                break
            if skip_special and i in (self.pad_id, self.bos_id):
                continue
            words.append(self.vocab[i])
        return " ".join(words)

    def batch_encode(self, texts: list[str], max_length: int | None = None) -> torch.Tensor:
        """LongTensor[B, T] of <bos> ids <eos>, right-padded with <pad> (cut to ``max_length``)."""
        rows = [self.encode(text)[:max_length] for text in texts]
        out = torch.full((len(rows), max(map(len, rows), default=0)), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"vocab": self.vocab, "lowercase": self.lowercase}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "WordTokenizer":
        data = json.loads(Path(path).read_text())
        return cls(data["vocab"], data["lowercase"])
