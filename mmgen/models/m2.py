"""Semi-supervised VAE "M2" (Kingma, Rezende, Mohamed & Welling, 2014)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.models.base import component
from mmgen.models.cvae import CVAE
from mmgen.models.vae import encoder_input


class M2(CVAE):
    """p(y) uniform, p(z) = N(0, I), p(x | y, z) (the CVAE's decoder); q(z | x, y) (the CVAE's
    encoder) and a classifier q(y | x).

    - labelled example: L(x, y) = E_q(z|x,y) log p(x | y, z) + log p(y) - KL(q(z|x,y) || p(z));
    - unlabelled example: U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)), a bound on log p(x) (it equals
      logsumexp_y L(x, y) when q(y|x) is proportional to exp L(x, y));
    - ``loss(x, y)``: ``-(sum of L over labelled + sum of U over unlabelled
      - alpha * sum of log q(y|x) over labelled) / batch``. ``y == -1`` marks an unlabelled example;
      ``y=None`` means the whole batch is unlabelled.

    ``classify(x)`` is the argmax of q(y | x). ``mmgen.eval`` reports its error on the labels and the
    unlabelled bound U as ``elbo``; ``mmgen.data.load(..., labels=100)`` keeps 100 training labels.

    Args:
        encoder, decoder, num_classes, latent_dim, likelihood: as in :class:`CVAE`.
        classifier: module or spec with ``out_features``; the model adds the class logit head.
        alpha: weight of the classification loss per labelled example. The paper's weight 0.1 * N on
            the mean over labelled examples corresponds here to alpha = 0.1 * N / N_labelled.
    """

    data_components = {"encoder": "encoder", "decoder": "decoder", "classifier": "encoder"}  # see mmgen.infer

    def __init__(self, encoder, decoder, classifier, num_classes: int = 10, latent_dim: int = 16,
                 likelihood="bernoulli", alpha: float = 1.0):
        super().__init__(encoder, decoder, num_classes=num_classes, latent_dim=latent_dim,
                         likelihood=likelihood)
        self.classifier, cls_spec = component(classifier, "encoder", "M2 classifier")
        if not isinstance(getattr(self.classifier, "out_features", None), int):
            raise ValueError(f"M2 classifier {type(self.classifier).__name__} has no integer attribute "
                             "'out_features' (see the component contract)")
        if alpha < 0:
            raise ValueError(f"M2 needs alpha >= 0, got {alpha}")
        self.classifier_head = nn.Linear(self.classifier.out_features, num_classes)
        self.alpha = float(alpha)
        self.config = {"model": "m2", "encoder": self.config["encoder"], "decoder": self.config["decoder"],
                       "classifier": cls_spec, "num_classes": num_classes, "latent_dim": latent_dim,
                       "likelihood": self.config["likelihood"], "alpha": self.alpha}

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | x), ``[B, num_classes]``."""
        return self.classifier_head(self.classifier(encoder_input(self.likelihood, x)))

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(y | x), ``[B]`` int64."""
        return self.class_logits(x).argmax(1)

    def _labels(self, y, batch: int) -> torch.Tensor:
        if y is None:
            return torch.full((batch,), -1, dtype=torch.long, device=self.heads.weight.device)
        y = torch.as_tensor(y, device=self.heads.weight.device)
        if y.is_floating_point() or y.shape != (batch,):
            raise ValueError(f"M2: y must be integer labels of shape ({batch},) with -1 for unlabelled "
                             f"examples, got {y.dtype} of shape {tuple(y.shape)}")
        if y.numel() and (y.min() < -1 or y.max() >= self.num_classes):
            raise ValueError(f"M2: labels must lie in [0, {self.num_classes}) or be -1 (unlabelled), got "
                             f"[{y.min().item()}, {y.max().item()}]")
        return y.long()

    def labelled_elbo(self, x: torch.Tensor, y, features: torch.Tensor | None = None) -> torch.Tensor:
        """L(x, y) per sample, in nats: a bound on log p(x, y)."""
        features = self.features(x) if features is None else features
        log_px, kl = self._terms(features, x, self.one_hot(y, len(x)))
        return log_px - kl - math.log(self.num_classes)

    def unlabelled_elbo(self, x: torch.Tensor, logits: torch.Tensor | None = None,
                        features: torch.Tensor | None = None) -> torch.Tensor:
        """U(x) per sample, in nats: every class is tried (one z sample each) and weighted by q(y|x)."""
        batch, classes = len(x), self.num_classes
        logits = self.class_logits(x) if logits is None else logits
        features = self.features(x) if features is None else features
        every_y = torch.arange(classes, device=x.device).repeat(batch)  # example b, class k at b * K + k
        bound = self.labelled_elbo(x.repeat_interleave(classes, 0), every_y,
                                   features.repeat_interleave(classes, 0)).view(batch, classes)
        log_q = torch.log_softmax(logits, dim=1)
        return (log_q.exp() * (bound - log_q)).sum(1)

    def elbo(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Per sample: L(x, y) where y is given (>= 0), U(x) where it is -1 or y is None."""
        y = self._labels(y, len(x))
        known = y >= 0
        out = torch.empty(len(x), dtype=self.heads.weight.dtype, device=x.device)
        if known.any():
            out[known] = self.labelled_elbo(x[known], y[known])
        if (~known).any():
            out[~known] = self.unlabelled_elbo(x[~known])
        return out

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """-(sum L + sum U - alpha * sum over labelled of log q(y|x)) / batch (see the class docs)."""
        y = self._labels(y, len(x))
        known = y >= 0
        logits = self.class_logits(x)
        features = self.features(x)
        total = x.new_zeros((), dtype=logits.dtype)
        if known.any():
            labelled = self.labelled_elbo(x[known], y[known], features[known])
            cross_entropy = F.cross_entropy(logits[known], y[known], reduction="sum")
            total = total - labelled.sum() + self.alpha * cross_entropy
        if (~known).any():
            total = total - self.unlabelled_elbo(x[~known], logits[~known], features[~known]).sum()
        return total / len(x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The likelihood's mean at the posterior mean of z, given y (default: the classifier's y)."""
        return super().reconstruct(x, self.classify(x) if y is None else y)
