"""spml-sweep hands the training options, --preset among them, to every model it trains."""

from click.testing import CliRunner

from spml.sweep import run
from spml.sweep.cli import main as sweep_cli


def test_training_options_reach_every_model(monkeypatch, tmp_path):
    seen = {}

    def fake_run_sweep(cfg, log=print):
        seen["cfg"] = cfg
        return {"students": [{"tau": 0.5, "map": 1.0}], "teachers": {"em": 1.0}}

    monkeypatch.setattr(run, "run_sweep", fake_run_sweep)
    args = ["--ann", "sp.json", "--val-ann", "val.json", "--test-ann", "test.json", "--out", str(tmp_path),
            "--preset", "voc", "--lr-schedule", "cosine", "--head-lr-mult", "3", "--seed", "2"]
    result = CliRunner().invoke(sweep_cli, args)
    assert result.exit_code == 0, result.output
    assert seen["cfg"].train == {"preset": "voc", "lr_schedule": "cosine", "head_lr_mult": 3.0, "seed": 2, "device": "auto"}


def sweep_config(monkeypatch, tmp_path, *extra):
    seen = {}

    def fake_run_sweep(cfg, log=print):
        seen["cfg"] = cfg
        return {"students": [{"tau": 0.5, "map": 1.0}], "teachers": {"em": 1.0}}

    monkeypatch.setattr(run, "run_sweep", fake_run_sweep)
    args = ["--ann", "sp.json", "--val-ann", "val.json", "--test-ann", "test.json", "--out", str(tmp_path), *extra]
    result = CliRunner().invoke(sweep_cli, args)
    return result, seen.get("cfg")


def test_several_values_repeated_or_comma_separated(monkeypatch, tmp_path):
    commas = sweep_config(monkeypatch, tmp_path, "--losses", "epr,gr", "--variants", "soft,rounds:3+tta",
                          "--tau", "0.6,0.7")[1]
    repeated = sweep_config(monkeypatch, tmp_path, "--losses", "epr", "--losses", "gr", "--variants", "soft",
                            "--variants", "rounds:3+tta", "--tau", "0.6", "--tau", "0.7")[1]
    for cfg in (commas, repeated):
        assert (cfg.losses, cfg.variants, cfg.taus) == (("epr", "gr"), ("soft", "rounds:3+tta"), (0.6, 0.7))
    every = sweep_config(monkeypatch, tmp_path, "--losses", "all")[1].losses
    assert every == ("an", "an-ls", "wan", "epr", "em", "role", "em-apl", "ll-r", "ll-ct", "ll-cp", "gr")


def test_the_defaults_and_bad_names(monkeypatch, tmp_path):
    cfg = sweep_config(monkeypatch, tmp_path)[1]
    assert (cfg.losses, cfg.variants, cfg.expected_positives) == ((), (), 2.9)  # Cole et al.'s COCO k
    for option, bad in (("--losses", "em,nope"), ("--variants", "soft,nope")):
        result = sweep_config(monkeypatch, tmp_path, option, bad)[0]
        assert result.exit_code == 2 and "nope" in result.output and "Traceback" not in result.output
