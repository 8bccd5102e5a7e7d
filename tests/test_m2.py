import pytest
import torch

from mmgen.data import keep_labels, load
from mmgen.eval import evaluate
from mmgen.models import M2, GenerativeModel
from helpers import assert_loss_fell, train_steps

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")


def digits_m2(latent=8, **kw):
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 64, "hidden": 16}
    dec = {"name": "image.conv", "in_features": latent + 10, "out_channels": 1, "size": 8,
           "params_per_channel": 17, "hidden": 16}
    return M2(enc, dec, dict(enc), num_classes=10, latent_dim=latent,
              likelihood={"name": "categorical", "levels": 17}, **kw)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = digits_m2(alpha=20.0)
    data = load("digits", "train", labels=100)
    losses = train_steps(model, data, epochs=3, labels=True)
    return model, losses


def test_training_with_100_labels_lowers_the_loss_and_classifies(trained):
    model, losses = trained
    assert_loss_fell(losses)
    metrics = evaluate(model, load("digits", "test"))
    assert metrics["error"] < 0.5, metrics  # chance is 0.9
    assert metrics["elbo"] < 0 and metrics["examples"] == 300


def tiny_deterministic_m2():
    """A tiny M2 whose q(z|x,y) has a negligible variance, so each L(x, y) is a
    deterministic number that can be recomputed by hand."""
    torch.manual_seed(3)
    model = digits_m2(latent=2)
    with torch.no_grad():
        model.heads.weight[2:] = 0.0
        model.heads.bias[2:] = -60.0  # logvar: std e^-30
    return model


def test_unlabelled_elbo_is_the_expectation_over_y_plus_entropy():
    model = tiny_deterministic_m2()
    x = load("digits", "test").x[:3]
    per_class = torch.stack([model.labelled_elbo(x, torch.full((3,), c)) for c in range(10)], dim=1)
    q = torch.softmax(model.class_logits(x), dim=1)
    by_hand = (q * per_class).sum(1) - (q * q.log()).sum(1)
    torch.testing.assert_close(model.unlabelled_elbo(x), by_hand)
    assert (by_hand <= torch.logsumexp(per_class, dim=1) + 1e-4).all()
    # With q(y|x) proportional to exp L(x, y) the bound is exactly logsumexp over y.
    torch.testing.assert_close(model.unlabelled_elbo(x, logits=per_class), torch.logsumexp(per_class, dim=1))


def test_loss_mixes_labelled_and_unlabelled_terms():
    model = tiny_deterministic_m2()
    x = load("digits", "test").x[:4]
    y = torch.tensor([3, -1, 7, -1])
    logits = model.class_logits(x)
    by_hand = -(model.labelled_elbo(x[[0, 2]], y[[0, 2]]).sum() + model.unlabelled_elbo(x[[1, 3]]).sum())
    by_hand = by_hand - model.alpha * torch.log_softmax(logits[[0, 2]], 1)[[0, 1], [3, 7]].sum()
    torch.testing.assert_close(model.loss(x, y), by_hand / 4)
    torch.testing.assert_close(model.elbo(x, y)[[1, 3]], model.unlabelled_elbo(x[[1, 3]]))
    torch.testing.assert_close(model.loss(x), -model.unlabelled_elbo(x).mean())


def test_keep_labels_is_balanced_fixed_and_only_for_train():
    train = load("digits", "train", labels=50)
    kept = train.y[train.y >= 0]
    assert len(kept) == 50 and torch.equal(kept.bincount(), torch.full((10,), 5))
    assert torch.equal(train.y, load("digits", "train", labels=50).y)
    full = load("digits", "train")
    assert torch.equal(train.y[train.y >= 0], full.y[train.y >= 0]) and (full.y >= 0).all()
    assert (load("digits", "test", labels=50).y >= 0).all()
    with pytest.raises(ValueError, match="labels=55: .* multiple of the 10 classes"):
        keep_labels(full, 55)


def test_save_and_reload_round_trip_and_samples(tmp_path, trained):
    model, _ = trained
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert isinstance(again, M2) and again.config == model.config
    x = load("digits", "test").x[:8]
    assert torch.equal(model.classify(x), again.classify(x))
    s = again.sample(10, y=torch.arange(10), generator=torch.Generator().manual_seed(0))
    assert s.shape == (10, 1, 8, 8)


def test_bad_labels_name_the_value():
    model = digits_m2()
    with pytest.raises(ValueError, match=r"\[0, 10\) or be -1 \(unlabelled\), got \[-2, 1\]"):
        model.loss(load("digits", "test").x[:2], y=torch.tensor([-2, 1]))
