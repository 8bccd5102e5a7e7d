"""MFM on batches whose rows miss modalities (``batch[f"{m}_mask"]``, True = present): only what a row
holds counts in the loss, and an MFM trains on a mix of complete and incomplete rows."""
import pytest
import torch

from mmgen.models import MFM

pytestmark = pytest.mark.plugins("image", "audio", "text")

MODALITIES = {
    "image": {"encoder": {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 8, "hidden": 4},
              "decoder": {"name": "image.conv", "in_features": 8, "out_channels": 1, "size": 8, "hidden": 4},
              "likelihood": "bernoulli"},
    "audio": {"encoder": {"name": "audio.mel", "n_mels": 6, "out_features": 8, "hidden": 4},
              "decoder": {"name": "audio.mel", "in_features": 8, "n_mels": 6, "frames": 9, "hidden": 4},
              "likelihood": "gaussian"},
    "text": {"encoder": {"name": "text.gru", "vocab_size": 7, "out_features": 8, "embed_dim": 4, "hidden": 4},
             "decoder": {"name": "text.gru", "vocab_size": 7, "in_features": 8, "embed_dim": 4, "hidden": 4},
             "likelihood": "tokens", "max_length": 4},
}


def model(prior="kl"):
    torch.manual_seed(0)
    return MFM(MODALITIES, num_classes=3, zy_dim=4, za_dim=2, hidden=8, prior=prior)


def batch(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    text = torch.stack([torch.tensor([1, 3 + int(c), 2, 0, 0]) for c in y])
    return {"image": (torch.rand(n, 1, 8, 8, generator=g) < (y[:, None, None, None] + 1) / 4).float(),
            "audio": torch.randn(n, 6, 9, generator=g) + y[:, None, None], "text": text, "y": y}


def masked(b):
    """Rows 0-1 miss audio, row 2 misses image and text, the rest are complete; absent values zero."""
    b = dict(b)
    b["audio_mask"] = torch.tensor([False, False, True, True, True, True])
    b["image_mask"] = torch.tensor([True, True, False, True, True, True])
    b["text_mask"] = b["image_mask"].clone()
    for m in ("audio", "image", "text"):
        keep = b[f"{m}_mask"].view(-1, *[1] * (b[m].dim() - 1))
        b[m] = torch.where(keep, b[m], torch.zeros_like(b[m]))
    return b


def loss_and_grads(mfm, b):
    mfm.zero_grad()
    torch.manual_seed(3)
    terms = mfm.loss_terms(b)
    terms.total.backward()
    return terms, {k: p.grad.clone() for k, p in mfm.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("prior", ["kl", "mmd"])
def test_absent_values_do_not_touch_the_loss_or_gradients(prior):
    mfm = model(prior)
    b = masked(batch())
    other = dict(b)
    g = torch.Generator().manual_seed(9)
    other["audio"] = torch.where(b["audio_mask"][:, None, None], b["audio"], torch.randn(6, 6, 9, generator=g) * 5)
    other["image"] = torch.where(b["image_mask"][:, None, None, None], b["image"], torch.ones_like(b["image"]))
    # other tokens of the same length (a packed GRU batch of other lengths sums in another order)
    other["text"] = torch.where(b["text_mask"][:, None], b["text"], torch.tensor([6, 0, 0, 0, 0]).expand(6, -1))
    (t1, g1), (t2, g2) = loss_and_grads(mfm, b), loss_and_grads(mfm, other)
    assert torch.isfinite(t1.total)
    assert torch.equal(t1.total, t2.total) and torch.equal(t1.surrogate, t2.surrogate)
    assert all(torch.equal(t1.reconstruction[m], t2.reconstruction[m]) for m in MODALITIES)
    assert g1.keys() == g2.keys() and all(torch.equal(g1[k], g2[k]) for k in g1)


def test_masks_of_complete_rows_change_nothing():
    mfm = model()
    b = batch()
    full = {**b, **{f"{m}_mask": torch.ones(6, dtype=torch.bool) for m in MODALITIES}}
    (t1, g1), (t2, g2) = loss_and_grads(mfm, b), loss_and_grads(mfm, full)
    torch.testing.assert_close(t1.total, t2.total)
    assert all(torch.allclose(g1[k], g2[k], atol=1e-6) for k in g1)


def test_a_row_fuses_only_what_it_holds():
    """q(z_y) of a row without audio is the one inferred from its image and text alone."""
    mfm = model().eval()
    b = masked(batch())
    mu_alone = mfm.encode({m: b[m][:1] for m in ("image", "text")})["y"][0]
    torch.testing.assert_close(mfm.encode(b)["y"][0][:1], mu_alone)
    assert torch.isfinite(mfm.loss_terms(b).reconstruction["audio"])  # mean over the 4 rows with audio


def test_predict_and_generate_use_the_masks():
    mfm = model().eval()
    b = masked(batch())
    row2 = {"audio": b["audio"][2:3]}  # row 2 holds audio only
    assert mfm.predict(b)[2] == mfm.predict(row2)[0]
    out = mfm.generate(("image", "audio"), b, ["audio"])  # rows without audio: z_a from its prior mean
    assert out["audio"].shape == (6, 6, 9)


def test_trains_on_a_batch_mix():
    mfm = model()
    optimizer = torch.optim.Adam(mfm.parameters(), lr=1e-2)
    mix = [batch(0), masked(batch(1)), masked(batch(2))]
    first = None
    for step in range(90):
        loss = mfm.loss(mix[step % 3])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        if step < 3:
            first = (first or 0) + loss.item()
    last = sum(mfm.loss(b).item() for b in mix)
    assert last < 0.8 * first
    mfm.eval()
    b = masked(batch(0))
    assert (mfm.predict(b) == b["y"]).float().mean() >= 0.5
