"""Outputs get the mode the user's umask gives, as any file a program creates (not mkstemp's 0600)."""

import os
import stat

import pytest
from click.testing import CliRunner

from spml.data.cli import main as data_cli
from spml.files import atomic_write, current_umask, write_json


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_umask_mode(mask, expected, umask, tmp_path):
    umask(mask)
    assert current_umask() == mask
    with atomic_write(tmp_path / "a.bin", "wb") as f:
        f.write(b"x")
    write_json(tmp_path / "b.json", {})
    assert mode(tmp_path / "a.bin") == expected and mode(tmp_path / "b.json") == expected


def test_the_cli_outputs_are_shareable(umask, tiny_data, tmp_path):
    umask(0o022)
    result = CliRunner().invoke(data_cli, ["single-positive", str(tiny_data["train"]), "--out", str(tmp_path / "sp.json")])
    assert result.exit_code == 0, result.output
    assert mode(tmp_path / "sp.json") == 0o644
