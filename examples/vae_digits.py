"""Train a small VAE on scikit-learn's bundled 8x8 digits with mmgen's fused reparameterization.

    python examples/vae_digits.py [--epochs 200] [--out runs/vae_digits]

Prints the test ELBO (nats per image) as it trains and writes reconstructions and samples as PNG.
The pixel intensities (0..16) are modelled as Binomial(16, p) per pixel.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

import mmgen
from mmgen.io import image_grid, save_png


def load_digits(seed: int = 0):
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:
        raise SystemExit("this example needs scikit-learn: pip install scikit-learn") from exc
    data = torch.tensor(sk_load_digits().data, dtype=torch.float32)  # [1797, 64], values 0..16
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data[perm[:1500]], data[perm[1500:]]


class VAE(nn.Module):
    def __init__(self, latent: int = 8, hidden: int = 256):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.SiLU(), nn.Linear(hidden, 64))
        self.latent = latent

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(x / 16).chunk(2, dim=1)
        z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
        likelihood = torch.distributions.Binomial(16, logits=self.decoder(z))
        return likelihood.log_prob(x).sum(1) - kl

    def sample(self, n: int) -> torch.Tensor:
        return torch.sigmoid(self.decoder(torch.randn(n, self.latent)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--out", default="runs/vae_digits")
    args = p.parse_args()
    torch.manual_seed(0)
    train, test = load_digits()
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    print(f"mmgen {mmgen.__version__}, build {mmgen.build_info()}")
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        for batch in train[torch.randperm(len(train))].split(100):
            loss = -model.elbo(batch).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 25 == 0 or epoch == 1:
            with torch.no_grad():
                test_elbo = model.elbo(test).mean().item()
            print(f"epoch {epoch:3d}  train -ELBO {loss.item():8.2f}  test ELBO {test_elbo:8.2f} nats")
    with torch.no_grad():
        samples = model.sample(64).view(-1, 1, 8, 8)
    os.makedirs(args.out, exist_ok=True)
    save_png(image_grid(samples), os.path.join(args.out, "samples.png"), scale=4)
    save_png(image_grid(test[:64].view(-1, 1, 8, 8) / 16), os.path.join(args.out, "test_images.png"), scale=4)
    print(f"done in {time.time() - start:.1f} s; wrote {args.out}/samples.png and test_images.png")


if __name__ == "__main__":
    main()
