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
