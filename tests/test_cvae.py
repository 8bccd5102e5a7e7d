import math

import pytest
import torch

from mmgen.data import load
from mmgen.eval import evaluate
from mmgen.models import CVAE, GenerativeModel
from helpers import assert_loss_fell, train_steps

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")


def digits_cvae(latent=8, **kw):
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 64, "hidden": 16}
    dec = {"name": "image.conv", "in_features": latent + 10, "out_channels": 1, "size": 8,
           "params_per_channel": 17, "hidden": 16}
    return CVAE(enc, dec, num_classes=10, latent_dim=latent, likelihood={"name": "categorical", "levels": 17},
                **kw)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = digits_cvae()
    data = load("digits", "train")
    losses = train_steps(model, data, epochs=4, labels=True)
    return model, losses


def test_training_lowers_the_loss_on_real_digits(trained):
    _, losses = trained
    last = assert_loss_fell(losses)
    assert last < 64 * math.log(17)


def test_samples_follow_the_requested_class(trained):
    model, _ = trained
    model.eval()
    s = model.sample(20, y=3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (20, 1, 8, 8) and s.min() >= 0 and s.max() <= 16
    default = model.sample(10, mean=True, generator=torch.Generator().manual_seed(0))
    assert default.shape == (10, 1, 8, 8)
    # The mean sample of class c is closer to the test images of class c than to the other classes.
    test = load("digits", "test")
    centroids = torch.stack([test.x[test.y == c].mean(0) for c in range(10)]).flatten(1)
    means = model.sample(50, y=torch.arange(50) % 10, mean=True,
                         generator=torch.Generator().manual_seed(1)).flatten(1)
    nearest = torch.cdist(means, centroids).argmin(1)
    assert (nearest == torch.arange(50) % 10).float().mean() > 0.8


def test_the_right_label_explains_the_image_better(trained):
    model, _ = trained
    test = load("digits", "test")
    x, y = test.x[:100], test.y[:100]
    torch.manual_seed(0)
    right = model.elbo(x, y).mean()
    wrong = model.elbo(x, (y + 1) % 10).mean()
    assert right > wrong + 5, (right, wrong)
    metrics = evaluate(model, test)  # the labels are passed as y
    assert metrics["elbo"] < 0 and metrics["examples"] == 300 and "recon_mse" in metrics


def test_save_and_reload_round_trip(tmp_path, trained):
    model, _ = trained
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert isinstance(again, CVAE) and again.config == model.config
    x, y = load("digits", "test").x[:8], load("digits", "test").y[:8]
    torch.testing.assert_close(model.reconstruct(x, y), again.reconstruct(x, y))


def test_bad_labels_and_components_name_the_value(trained):
    model, _ = trained
    x = load("digits", "test").x[:4]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), got \[0, 12\]"):
        model.loss(x, y=torch.tensor([0, 1, 2, 12]))
    with pytest.raises(ValueError, match="needs the labels y"):
        model.loss(x)
    with pytest.raises(ValueError, match="latent_dim \\+ num_classes = 18"):
        CVAE(
            {"name": "image.conv", "size": 8, "out_features": 8},
            {"name": "image.conv", "size": 8, "in_features": 8}, latent_dim=8)
