"""Evaluation progress, its recorded time, and the IWAE bound's decoder passes sized by bytes."""
from __future__ import annotations

import io
import json
import os

import pytest
import torch
from torch import nn

from mmgen import cli, runs
from mmgen.data.datasets import Dataset
from mmgen.eval import evaluate
from mmgen.memory import largest_allocation
from mmgen.models import VAE

D, L = 12, 3


def small_vae() -> VAE:
    torch.manual_seed(0)
    encoder, decoder = nn.Linear(D, 8), nn.Sequential(nn.Linear(L, 16), nn.Tanh(), nn.Linear(16, D))
    encoder.out_features, decoder.in_features = 8, L
    return VAE(encoder, decoder, latent_dim=L, likelihood="bernoulli").eval()


def data(n: int = 30) -> Dataset:
    return Dataset("bits", "test", (torch.rand(n, D, generator=torch.Generator().manual_seed(1)) > 0.5).float())


class Terminal(io.StringIO):
    def isatty(self):
        return True


@torch.no_grad()
def test_iwae_bound_does_not_depend_on_how_the_samples_are_split_into_passes():
    model, x = small_vae(), data(7).x
    bounds = []
    for options in ({"chunk": 40}, {"chunk": 1}, {"chunk": 7}, {"max_bytes": 1}, {"max_bytes": 10_000},
                    {"max_bytes": None}):
        torch.manual_seed(3)
        bounds.append(model.iwae_bound(x, 40, **options))
    for bound in bounds[1:]:
        torch.testing.assert_close(bound, bounds[0], rtol=0, atol=0)
    torch.manual_seed(4)
    assert not torch.equal(model.iwae_bound(x, 40), bounds[0])  # another seed, other draws


@torch.no_grad()
def test_the_byte_budget_sets_the_samples_per_pass():
    model, x = small_vae(), data(5).x
    _, largest = largest_allocation(lambda: model.likelihood.log_prob(model.decoder(torch.zeros(5, L)), x))
    calls = []
    model.decoder.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))

    def passes(**options):
        calls.clear()
        model.iwae_bound(x, 20, **options)
        return list(calls)

    assert passes(max_bytes=1) == [5] * 20  # one sample (5 rows) per pass, the first one measured
    assert passes(max_bytes=10 ** 9) == [5, 95]
    assert passes(max_bytes=None) == [100] and passes(chunk=8) == [40, 40, 20]
    assert largest == 5 * 16 * 4  # the decoder's hidden layer: [5, 16] floats
    assert passes(max_bytes=3 * largest) == [5] + [15] * 6 + [5]  # 3 samples per pass after the first


def test_largest_allocation_sees_new_storages_only():
    x = torch.zeros(1000)
    out, largest = largest_allocation(lambda: (x[:10] + 1).relu_().view(2, 5).expand(3, 2, 5))
    assert largest == 40 and out.shape == (3, 2, 5)
    assert largest_allocation(lambda: x.add_(1).view(10, 100))[1] == 0


@pytest.mark.parametrize("bad", [0, -5, 1.5, "32MB", True])
def test_bad_byte_budgets_are_refused_with_the_value(bad):
    with pytest.raises(ValueError, match=rf"max_bytes must be a positive int .*got {bad!r}"):
        evaluate(small_vae(), data(), k=4, max_bytes=bad, progress=False)
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        small_vae().iwae_bound(data(3).x, 4, max_bytes=bad)


def test_evaluation_records_its_time_per_metric_and_in_total():
    metrics = evaluate(small_vae(), data(), k=8, batch_size=7, progress=False)
    assert metrics["eval_seconds"] > 0 and metrics["seconds_nll_iwae_k8"] > 0 and metrics["seconds_elbo"] > 0
    assert metrics["seconds_nll_iwae_k8"] + metrics["seconds_elbo"] <= metrics["eval_seconds"]


def test_evaluation_progress_is_a_bar_on_a_terminal_lines_otherwise_and_can_be_turned_off(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    evaluate(small_vae(), data(), k=4, batch_size=7, max_examples=20)
    assert "20/20" in terminal.getvalue() and "example" in terminal.getvalue()
    monkeypatch.undo()
    evaluate(small_vae(), data(), k=4, batch_size=7)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("example")]
    assert lines[0].split()[1] == "7/30" and lines[-1].split()[1] == "30/30"  # first and last, then every 10 s
    evaluate(small_vae(), data(), k=4, batch_size=7, progress=False)
    assert "example" not in capsys.readouterr().err


def test_progress_lines_carry_an_eta_until_done():
    from mmgen.train.progress import Progress
    stream = io.StringIO()
    bar = Progress(4, 0, stream=stream, unit="example")
    for done in range(1, 5):
        bar.update(done, {})
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert "ETA" in lines[0] and "ETA" not in lines[-1]


@pytest.mark.plugins("image")  # the vae-digits preset's image.conv networks
def test_mmgen_eval_writes_the_time_and_shows_progress(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--preset", "vae-digits", "--out", out, "--set", "train.steps=2",
                     "--set", "train.progress=false", "--set", "eval.k=2", "--set", "eval.max_examples=8",
                     "--set", "train.eval_every=100", "--set", "train.sample_every=100",
                     "--set", "train.checkpoint_every=100"]) == 0
    assert "example" not in capsys.readouterr().err  # train.progress=false: the final evaluation is quiet too
    assert cli.main(["eval", out, "--k", "3", "--max-examples", "10"]) == 0
    captured = capsys.readouterr()
    assert "example     10/10" in captured.err
    with open(os.path.join(out, "eval_val.json")) as f:
        saved = json.load(f)
    assert saved["eval_seconds"] > 0 and saved["seconds_nll_iwae_k3"] > 0 and saved["examples"] == 10
    assert runs.evaluate(out, "val", k=2, max_examples=4, progress=False)["eval_seconds"] > 0
    assert "example" not in capsys.readouterr().err
