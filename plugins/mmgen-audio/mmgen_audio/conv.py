"""Conv encoder over log-mel spectrograms and a decoder back to log-mels."""
import torch
from torch import nn


class MelEncoder(nn.Module):
    """Log-mel [B, n_mels, frames] (any number of frames >= 4) -> [B, out_features]."""

    def __init__(self, n_mels: int = 64, out_features: int = 128, hidden: int = 128):
        super().__init__()
        self.n_mels, self.out_features = n_mels, out_features
        self.body = nn.Sequential(
            nn.Conv1d(n_mels, hidden, 5, padding=2), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * hidden, out_features)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        if log_mel.dim() != 3 or log_mel.shape[1] != self.n_mels or log_mel.shape[2] < 4:
            raise ValueError(f"audio.mel encoder expects [B, {self.n_mels}, frames >= 4], "
                             f"got {tuple(log_mel.shape)}")
        features = self.body(log_mel)
        return self.head(torch.cat([features.mean(dim=2), features.amax(dim=2)], dim=1))


class MelDecoder(nn.Module):
    """[B, in_features] -> log-mel means [B, n_mels, frames] (for a Gaussian likelihood)."""

    def __init__(self, in_features: int = 128, n_mels: int = 64, frames: int = 128, hidden: int = 128):
        super().__init__()
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames!r}")
        self.in_features, self.n_mels, self.frames = in_features, n_mels, frames
        self.start = (hidden, -(-frames // 4))
        self.project = nn.Sequential(nn.Linear(in_features, hidden * self.start[1]), nn.ReLU())
        self.body = nn.Sequential(
            nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(hidden, n_mels, 5, padding=2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(f"audio.mel decoder expects [B, {self.in_features}], got {tuple(h.shape)}")
        return self.body(self.project(h).view(-1, *self.start))[:, :, :self.frames]
