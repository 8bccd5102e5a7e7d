"""Run-config errors name the section and key, the bad value and what is accepted, and come before
anything is trained or written: through mmgen.runs and through `mmgen train CONFIG.json`."""
import json
import os
import re

import pytest

from helpers import cli_error, cli_usage_error
from mmgen import cli, presets, runs

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")


def vae_digits(**changes):
    """The vae-digits preset with ``changes`` ({"model.encoder.name": ...}) applied."""
    return runs.apply_overrides(presets.get("vae-digits"),
                                [f"{key}={json.dumps(value)}" for key, value in changes.items()])


CASES = {
    "unknown model": ({"model.model": "vea"},
                      r"run config model: unknown model 'vea'; did you mean 'vae'\? \(registered models: .*\bvae\b.*vqvae"),
    "unknown encoder": ({"model.encoder.name": "image.cnv"},
                        r"run config model: VAE encoder: unknown encoder 'image.cnv'; did you mean "
                        r"'image.conv'\? \(registered encoder names: .*image.conv"),
    "encoder option": ({"model.encoder.hiden": 3},
                       r"run config model: VAE encoder: encoder 'image.conv' .*unexpected keyword argument "
                       r"'hiden'; it takes \(.*hidden: int"),
    "unknown model option": ({"model.latent": 3},
                             r"model 'vae' has no option\(s\) \['latent'\]; accepted: \[.*'latent_dim'"),
    "unknown dataset": ({"data.name": "cifar"},
                        r"run config data: unknown dataset name='cifar'; available: digits, mnist"),
    "dataset option": ({"data.binarise": "dynamic"},
                       r"run config data: dataset 'digits' has no option\(s\) \['binarise'\]; accepted: \['labels'\]"),
    "unknown likelihood": ({"model.likelihood": "bernouli"},
                           r"run config model: unknown likelihood 'bernouli'; accepted: bernoulli, categorical, gaussian"),
    "likelihood option": ({"model.likelihood": {"name": "categorical", "level": 17}},
                          r"likelihood 'categorical' has no option\(s\) \['level'\]; accepted: \['levels'\]"),
    "training option value": ({"train.optimizer": "adamax"},
                              r"run config train: training option optimizer='adamax' is not one of "
                              r"\['adam', 'adamw', 'sgd', 'rmsprop'\]"),
    "training option type": ({"train.steps": "many"},
                             r"run config train: training option steps='many' must be int \(default 1000\)"),
    "training option bool": ({"train.progress": "no"}, r"training option progress='no' must be bool"),
    "unknown training option": ({"train.stpes": 3}, r"unknown training option\(s\) \['stpes'\]; accepted: "),
    "batch size": ({"train.batch_size": 0}, r"training option batch_size must be >= 1, got 0"),
    "batch size above the data": ({"train.batch_size": 2000}, r"run config train: training option "
                                  r"batch_size=2000 is larger than the training data \(1297 examples\)"),
    "eval option": ({"eval.kk": 3}, r"run config eval: unknown option\(s\) \['kk'\]; accepted: \['k', "),
    "latent size mismatch": ({"model.decoder.in_features": 8},
                             r"run config model: VAE decoder takes in_features=8 but latent_dim=16"),
    "decoder size mismatch": ({"model.decoder.size": 28},
                              r"run config model: VAE decoder 'image.conv': size=28 does not fit the data, which "
                              r"gives size=8; leave 'size' out to take it from the data"),
    "encoder size mismatch": ({"model.encoder.size": 28},
                              r"VAE encoder 'image.conv': size=28 does not fit the data, which gives size=8"),
    "levels mismatch": ({"model.likelihood": {"name": "categorical", "levels": 2}},
                        r"VAE likelihood: levels=2 does not fit the data, which gives levels=17"),
    "decoder params mismatch": ({"model.decoder.params_per_channel": 2},
                                r"does not fit the data 'digits'.*cannot hold 17 parameters per channel"),
}


def test_gan_generator_and_discriminator_sizes_must_fit_the_data(tmp_path):
    config = runs.apply_overrides(presets.get("dcgan-digits"), ["model.generator.size=28", "train.steps=1"])
    with pytest.raises(ValueError, match=r"run config model: GAN generator 'image.dcgan': size=28 does not fit "
                                         r"the data, which gives size=8"):
        runs.train(config, str(tmp_path / "run"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_error_names_key_value_and_options(case, tmp_path):
    changes, message = CASES[case]
    with pytest.raises((ValueError, TypeError, LookupError), match=message):
        runs.train(vae_digits(**changes), str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "run.json")  # nothing was written


def test_unknown_section_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"unknown run config section\(s\) \['trian'\]; accepted: "):
        runs.train(runs.apply_overrides(presets.get("vae-digits"), ["trian.steps=3"]), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="run config file 'nope.json' does not exist.*presets: "):
        runs.load_config("nope.json")
    with pytest.raises(ValueError, match=r"unknown preset 'vae-cifar'; available: .*vae-digits"):
        runs.load_config("vae-cifar")


def test_mmgen_train_on_a_json_config_reports_the_error_without_traceback(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(vae_digits(**{"model.encoder.name": "image.cnv"})))
    assert re.match(r"mmgen: error: train: run config model: VAE encoder: unknown encoder 'image.cnv'; did "
                    r"you mean 'image.conv'\?", cli_error(capsys, ["train", str(config), "--out", str(tmp_path / "run")]))
    config.write_text(json.dumps(vae_digits(**{"train.nan_policy": "ignore"})))
    assert re.match(r"mmgen: error: train: .*training option nan_policy='ignore' is not one of \['stop', 'skip'\]",
                    cli_error(capsys, ["train", str(config), "--out", str(tmp_path / "run")]))
    assert re.match(r"mmgen: error: train: .*unknown dataset name='cifar'", cli_error(
        capsys, ["train", "--preset", "vae-digits", "--out", str(tmp_path / "run"), "--set", "data.name=cifar"]))
    assert not os.path.exists(tmp_path / "run")


def test_train_help_lists_every_training_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    printed = capsys.readouterr().out
    from dataclasses import fields
    from mmgen.train import TrainConfig
    for f in fields(TrainConfig):
        line = next((row for row in printed.splitlines() if row.split()[:1] == [f.name]), None)
        assert line is not None, f.name
        assert json.dumps(f.default) in line and f.metadata["help"][:20] in line
    assert "torchrun --nproc_per_node=N -m mmgen train" in printed and "--set" in printed
    assert cli.main(["train", "--list-presets"]) == 0  # needs no --out
    assert "vae-digits" in capsys.readouterr().out
    assert cli_usage_error(capsys, ["train", "--preset", "vae-digits"]) == \
        "mmgen train: error: --out DIR (the run folder) is required"


def test_a_folder_does_not_hide_a_preset_and_is_not_read_as_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vae-digits").mkdir()  # e.g. an earlier `--out vae-digits`
    assert runs.load_config("vae-digits") == presets.get("vae-digits")
    (tmp_path / "my-runs").mkdir()
    with pytest.raises(ValueError, match=r"'my-runs' is a folder; a run config is a JSON or YAML file or a preset"):
        runs.load_config("my-runs")


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    from mmgen.io import atomic_write_bytes
    old = os.umask(0o022)
    try:
        atomic_write_bytes(str(tmp_path / "x.json"), b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
