"""Trainable GRU text encoder and conditional GRU decoder over token ids."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def check_tokens(tokens: torch.Tensor, vocab_size: int, who: str) -> None:
    if tokens.dim() != 2 or tokens.dtype != torch.long:
        raise ValueError(f"{who} expects token ids as LongTensor[B, T], got {tokens.dtype} "
                         f"of shape {tuple(tokens.shape)}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"{who}: token ids must lie in [0, {vocab_size}), got "
                         f"[{tokens.min().item()}, {tokens.max().item()}]")


class GRUEncoder(nn.Module):
    """LongTensor[B, T] (right-padded with ``pad_id``) -> [B, out_features]."""

    def __init__(self, vocab_size: int, out_features: int = 128, embed_dim: int = 64, hidden: int = 128,
                 num_layers: int = 1, bidirectional: bool = True, pad_id: int = 0):
        super().__init__()
        self.vocab_size, self.out_features, self.pad_id = vocab_size, out_features, pad_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.gru = nn.GRU(embed_dim, hidden, num_layers, batch_first=True, bidirectional=bidirectional)
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(hidden * self.directions, out_features)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_tokens(tokens, self.vocab_size, "text.gru encoder")
        lengths = (tokens != self.pad_id).sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # [layers * directions, B, hidden]
        top = last[-self.directions:].transpose(0, 1).reshape(tokens.shape[0], -1)
        return self.head(top)


class GRUDecoder(nn.Module):
    """A GRU language model conditioned on h: [B, in_features] sets the initial state and is fed
    with every token.

    ``forward(h, tokens)`` uses teacher forcing: ``tokens`` is a batch from
    ``WordTokenizer.batch_encode`` (<bos> ... <eos> <pad>...) and the result ``[B, T-1, vocab]``
    holds, at step t, the logits of ``tokens[:, t+1]``.
    """

    def __init__(self, vocab_size: int, in_features: int = 128, embed_dim: int = 64, hidden: int = 256,
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2):
        super().__init__()
        self.vocab_size, self.in_features = vocab_size, in_features
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.init_state = nn.Linear(in_features, hidden)
        self.gru = nn.GRU(embed_dim + in_features, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def _check_h(self, h: torch.Tensor) -> None:
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(f"text.gru decoder expects h shaped [B, {self.in_features}], got {tuple(h.shape)}")

    def _step(self, h, tokens, state):
        inputs = torch.cat([self.embed(tokens), h.unsqueeze(1).expand(-1, tokens.shape[1], -1)], dim=2)
        output, state = self.gru(inputs, state)
        return self.out(output), state

    def forward(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        self._check_h(h)
        check_tokens(tokens, self.vocab_size, "text.gru decoder")
        state = torch.tanh(self.init_state(h)).unsqueeze(0)
        return self._step(h, tokens[:, :-1], state)[0]

    def loss(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats per token) of tokens[:, 1:], ignoring padding."""
        logits = self(h, tokens)
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), tokens[:, 1:].reshape(-1),
                               ignore_index=self.pad_id)

    @torch.no_grad()
    def generate(self, h: torch.Tensor, max_length: int = 32, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """LongTensor[B, <= max_length] of tokens after <bos>: greedy when ``temperature == 0``,
        sampled otherwise; each row stops at its <eos> and is padded after it."""
        self._check_h(h)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        state = torch.tanh(self.init_state(h)).unsqueeze(0)
        token = torch.full((h.shape[0], 1), self.bos_id, dtype=torch.long, device=h.device)
        done = torch.zeros(h.shape[0], dtype=torch.bool, device=h.device)
        steps = []
        for _ in range(max_length):
            logits, state = self._step(h, token, state)
            logits = logits[:, -1]
            if temperature == 0:
                token = logits.argmax(dim=1, keepdim=True)
            else:
                token = torch.multinomial(torch.softmax(logits / temperature, dim=1), 1, generator=generator)
            token = token.masked_fill(done.unsqueeze(1), self.pad_id)
            steps.append(token)
            done |= token.squeeze(1) == self.eos_id
            if done.all():
                break
        return torch.cat(steps, dim=1)
