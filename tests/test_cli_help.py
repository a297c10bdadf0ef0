"""Help that helps: every option of every command explained with its default, --version everywhere, --help that
imports no torch, onnx or numpy, and an unknown --arch answered with the closest names."""

import subprocess
import sys
from importlib import import_module
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from spml.data.cli import main as data_cli
from spml.eval.cli import main as eval_cli
from spml.sweep.cli import main as sweep_cli
from spml.export.cli import main as export_cli
from spml.label.cli import main as label_cli
from spml.train.cli import main as train_cli

COMMANDS = {"spml-data": data_cli, "spml-train": train_cli, "spml-export": export_cli, "spml-label": label_cli,
            "spml-eval": eval_cli, "spml-sweep": sweep_cli}
MODULES = ["spml.data.cli", "spml.train.cli", "spml.export.cli", "spml.label.cli", "spml.eval.cli", "spml.sweep.cli",
           "spml.train.backbone_cli", "spml.train.vlm_cli"]


def delegated():
    """Commands whose work lives in a stage their group may not import, run as a program: name -> the command
    that owns their options (spml-data backbone trains, which spml/data must not import)."""
    from spml.train.backbone_cli import main as backbone_cli
    from spml.train.vlm_cli import main as vlm_cli

    return {"spml-data backbone": backbone_cli, "spml-data vlm": vlm_cli}


def every_command():
    for name, cmd in COMMANDS.items():
        yield name, cmd
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            yield f"{name} {sub_name}", delegated().get(f"{name} {sub_name}", sub)


@pytest.mark.parametrize("name,cmd", list(every_command()), ids=[n for n, _ in every_command()])
def test_every_option_has_help_and_a_shown_default(name, cmd):
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name in ("help", "version"):
            continue
        assert param.help, f"{name} {param.opts[0]}: no help text"
        flag = param.is_flag and not param.secondary_opts  # off unless given: nothing to show
        required = param.get_help_extra(click.Context(cmd)).get("required")  # required, or marked so in --help
        assert flag or required or param.show_default, f"{name} {param.opts[0]}: no shown default"


@pytest.mark.parametrize("name,cmd", list(every_command()), ids=[n for n, _ in every_command()])
def test_version_on_every_command(name, cmd):
    from spml import __version__

    args = name.split()[1:] + ["--version"]
    root = COMMANDS[name.split()[0]]
    result = CliRunner().invoke(root, args)
    assert result.exit_code == 0 and __version__ in result.output, result.output


def test_labels_required_options_are_marked_and_tau_high_explained_once():
    text = CliRunner().invoke(label_cli, ["--help"]).output
    flat = " ".join(text.split())
    assert "beside --tau-low. [0<=x<1; required]" in flat and "labels.fiftyone/). [required]" in flat
    assert text.count("--tau-high") == 2  # the option's names, and the one sentence saying it is --tau
    assert "[MODEL]" in text  # the model positionally, as spml-export and spml-eval take it


def test_sweep_teacher_loss_is_a_choice():
    from spml.train.loss_names import ALL_LOSS_NAMES

    option = next(p for p in sweep_cli.params if p.name == "teacher_loss")
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == ALL_LOSS_NAMES
    result = CliRunner().invoke(sweep_cli, ["--ann", "a", "--val-ann", "v", "--test-ann", "t", "--out", "o",
                                            "--teacher-loss", "nope"])
    assert result.exit_code == 2 and "'em'" in result.output


def test_the_torch_free_names_match_the_real_ones():
    from spml.sweep import cli as sweep_module
    from spml.sweep.run import VARIANTS
    from spml.train import cli as train_module
    from spml.train.loss_names import LOSS_NAMES, STATEFUL_LOSS_NAMES
    from spml.train.losses import LOSSES
    from spml.train.presets import LR_SCHEDULES, PRESETS
    from spml.train.stateful_losses import STATEFUL_LOSSES

    assert LOSS_NAMES == tuple(LOSSES) and STATEFUL_LOSS_NAMES == tuple(STATEFUL_LOSSES)
    assert sweep_module.VARIANT_NAMES == tuple(VARIANTS) == ("soft", "band", "prior", "init", "init-soft", "round2", "rounds:K", "review:B[:strategy[:unit]]", "teacher", "full")
    from spml.train.loss_names import LR_SCHEDULE_NAMES, PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS) and LR_SCHEDULE_NAMES == tuple(LR_SCHEDULES)


def test_sweep_and_train_share_one_definition_of_the_model_options():
    from spml.train.options import MODEL_OPTIONS

    def described(cmd):
        return {p.name: (p.opts, p.secondary_opts, repr(p.type), p.default, p.help, p.show_default)
                for p in cmd.params if isinstance(p, click.Option)}

    train, sweep = described(train_cli), described(sweep_cli)
    shared = {name for name in train if name in sweep} - {"ann", "images", "val_ann", "val_images", "out", "help",
                                                          "version"}
    assert len(MODEL_OPTIONS) == 13 and len(shared) == 13  # --no-pretrained is its own option since --pretrained [TAG]
    for name in shared:
        assert train[name] == sweep[name], name


def test_the_help_shows_the_defaults_the_losses_run_with():
    import re

    from spml.train.loss_registry import LOSSES
    from spml.train.stateful_losses import create_stateful_loss

    text = CliRunner().invoke(train_cli, ["--help"], terminal_width=200).output
    shown = {}
    for line in text[text.index("Losses (--loss)"):].splitlines():
        if m := re.match(r"    (\S+): ", line):  # click indents the epilog by 2
            loss = m.group(1)
        elif m := re.match(r"        (\w+)=(\S+): ", line):
            shown[(loss, m.group(1))] = m.group(2)
    assert {loss for loss, _ in shown} == {n for n, s in LOSSES.items() if s.hparams}
    for name, spec in LOSSES.items():
        built = create_stateful_loss(name, 4, 3, 2) if spec.stateful else None
        for h in spec.hparams:
            value = h.parse(shown.pop((name, h.name)))
            assert value == (getattr(built, h.name) if built is not None else h.default), (name, h.name)
    assert not shown


def test_the_commands_import_no_heavy_library_before_parsing():
    # what makes --help slow is importing torch (2-3 s), onnx or numpy before click runs; time goes to benchmarks
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES)
            + "print(sorted(m for m in ('torch', 'torchvision', 'onnx', 'onnxruntime', 'numpy', 'PIL', 'tqdm',"
              " 'pycocotools') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_an_unknown_arch_gives_the_closest_and_where_to_list_all(tiny_data):
    result = CliRunner().invoke(train_cli, ["--ann", str(tiny_data["sp"]), "--arch", "resnet51", "--no-pretrained"])
    assert result.exit_code == 1
    line = [line for line in result.output.splitlines() if line.startswith("Error")][0]
    assert "did you mean resnet50, resnet152, resnet101?" in line or line.count("resnet") == 4, line
    assert "spml-train --list-archs" in line and "vit_b_16" not in line
    listed = CliRunner().invoke(train_cli, ["--list-archs"])
    assert listed.exit_code == 0 and "resnet18" in listed.output.split() and "vit_b_16" in listed.output.split()


def test_spml_data_backbone_is_the_train_stages_command_run_as_a_program():
    """Its --help and its errors are the delegate's, under the name the user typed; its exit code passes through."""
    result = CliRunner().invoke(data_cli, ["backbone", "--help"])
    assert result.exit_code == 0 and result.output.startswith("Usage: spml-data backbone [OPTIONS]"), result.output
    assert "--image-size" in result.output and "[default: cnn4]" in result.output
    bad = subprocess.run([sys.executable, "-c", "from spml.data.cli import main; main()", "backbone", "--image-size", "3"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "Invalid value for '--image-size'" in bad.stderr, bad.stderr


def test_every_installed_script_runs_its_command():
    """pyproject.toml's [project.scripts], what pip turns into commands: each resolves to the command checked here
    (spml-review's aside, which has tests of its own) and answers --help under its own name."""
    from spml.review.cli import main as review_cli

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    resolved = {name: getattr(import_module(target.partition(":")[0]), target.partition(":")[2])
                for name, target in scripts.items()}
    assert resolved == {**COMMANDS, "spml-review": review_cli}
    for name, command in resolved.items():
        result = CliRunner().invoke(command, ["--help"], prog_name=name)
        assert result.exit_code == 0 and result.output.startswith(f"Usage: {name} "), (name, result.output)
