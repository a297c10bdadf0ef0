"""spml-review follows the commands' conventions: help and a shown default on every option, --version on every
command, and --help that imports no numpy (the review stage must stay as light as the labeler: no torch at all)."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from spml.review.cli import main

COMMANDS = [("spml-review", main)] + [(f"spml-review {n}", c) for n, c in main.commands.items()]


def test_the_three_commands_exist():
    assert set(main.commands) == {"select", "merge", "simulate"}


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_option_has_help_and_a_shown_default(name, cmd):
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name in ("help", "version"):
            continue
        assert param.help, f"{name} {param.opts[0]}: no help text"
        required = param.get_help_extra(click.Context(cmd)).get("required")
        assert param.is_flag or required or param.show_default, f"{name} {param.opts[0]}: no shown default"


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_version_on_every_command(name, cmd):
    from spml import __version__

    result = CliRunner().invoke(main, name.split()[1:] + ["--version"])
    assert result.exit_code == 0 and __version__ in result.output, result.output


def test_help_imports_nothing_heavy_and_the_stage_never_torch():
    code = ("import sys\nimport spml.review.cli\n"
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'PIL', 'pycocotools') if m in sys.modules))\n"
            "import spml.review.select, spml.review.merge, spml.review.simulate\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'onnxruntime') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "[]"]


def test_the_script_is_declared():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["spml-review"] == "spml.review.cli:main"
