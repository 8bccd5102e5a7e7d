"""The text modality: strings from text files, word-level vocabularies and token ids, text samples."""
from __future__ import annotations

import html

import torch

from mmgen.io import atomic_write_bytes
from mmgen_text.gru import check_tokens
from mmgen_text.tokenizer import SPECIALS, WordTokenizer


class TextModality:
    """Text is tokenized by :class:`mmgen_text.WordTokenizer` (lowercased words and punctuation;
    ids 0-3 are <pad>, <bos>, <eos>, <unk>)."""

    name = "text"
    extensions = (".txt",)
    specials = SPECIALS  # the first tokens of every vocabulary, ids 0-3
    typed_input = True  # a demo asks for a typed caption, not a file (mmgen demo)

    def load(self, path: str, encoding: str = "utf-8") -> str:
        """The whole text of a file, stripped."""
        try:
            with open(path, encoding=encoding) as f:
                return f.read().strip()
        except FileNotFoundError:
            raise ValueError(f"text file {path} does not exist") from None
        except (UnicodeDecodeError, OSError) as exc:
            raise ValueError(f"text file {path} cannot be read as {encoding} text: {exc}") from None

    def tokenizer(self, vocabulary: list[str], lowercase: bool = True) -> WordTokenizer:
        """The tokenizer of ``vocabulary`` (it must start with :attr:`specials`); ``lowercase``
        must match how the vocabulary was built."""
        return WordTokenizer(list(vocabulary), lowercase=lowercase)

    @staticmethod
    def check_tokens(tokens: torch.Tensor, vocab_size: int, who: str) -> None:
        """A clear ``ValueError`` (naming ``who``) unless ``tokens`` is a LongTensor [B, T] of ids
        in ``[0, vocab_size)``."""
        check_tokens(tokens, vocab_size, who)

    def vocabulary(self, texts, min_count: int = 1) -> list[str]:
        """Specials, then the words seen at least ``min_count`` times, most frequent first."""
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"text option min_count must be an int >= 1, got {min_count!r}")
        return WordTokenizer.from_corpus(texts, min_freq=min_count).vocab

    def encode(self, texts: list[str], vocabulary: list[str], length: int | None = None) -> torch.Tensor:
        """LongTensor [B, length] of ``<bos> ids <eos>`` padded with <pad> (0); longer captions are cut
        (their <eos> with them); without ``length``, the longest caption's."""
        tokens = self.tokenizer(vocabulary).batch_encode(list(texts), max_length=length)
        if length is not None and tokens.shape[1] < length:
            tokens = torch.nn.functional.pad(tokens, (0, length - tokens.shape[1]), value=0)
        return tokens

    def decode(self, tokens: torch.Tensor, vocabulary: list[str]) -> list[str]:
        tokenizer = self.tokenizer(vocabulary)
        return [tokenizer.decode(row.tolist()) for row in tokens]

    def write(self, path_prefix: str, values: torch.Tensor, labels=None, vocabulary=None, **info) -> str:
        """``PREFIX.txt``: one line per sample, ``label<TAB>text`` when labels are given."""
        if vocabulary is None or values.is_floating_point():
            raise ValueError("text samples need token ids and the vocabulary")
        texts = self.decode(values, vocabulary)
        lines = texts if labels is None else [f"{int(label)}\t{text}" for label, text in zip(labels, texts)]
        path = f"{path_prefix}.txt"
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
        return path

    def html(self, path: str) -> str:
        """A ``<pre>`` of the file's lines."""
        return f'<pre class="text-sample">{html.escape(self.load(path))}</pre>'

    def to_tensorboard(self, writer, tag: str, path: str, step: int) -> None:
        lines = self.load(path).splitlines()
        writer.add_text(tag, "\n".join(f"    {line}" for line in lines), step)  # indented: Markdown code

    def example(self, source: str, vocabulary: list[str], length: int, **entry) -> torch.Tensor:
        """One example from a typed caption, as data described by ``entry`` holds it: token ids [length]."""
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"a caption must be a non-empty string, got {source!r}")
        return self.encode([source], vocabulary, length=length)[0]
