import os

import pytest

from spml.errors import SpmlError
from spml.files import atomic_write, remove_temps


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    out = tmp_path / "labels.json"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(out) as f:
            f.write("half of a new")
            raise RuntimeError
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["labels.json"]


def test_atomic_write_turns_a_write_error_into_one_line(tmp_path):
    with pytest.raises(SpmlError, match="cannot write"):
        with atomic_write(tmp_path / "x.json") as f:
            raise OSError(28, "No space left on device")
    assert os.listdir(tmp_path) == []


def test_an_interrupt_before_the_with_body_leaves_a_temp_that_remove_temps_sweeps(tmp_path):
    # A signal between __enter__ and the with-block's setup skips __exit__: the temp file stays until swept.
    out = tmp_path / "labels.json"
    writer = atomic_write(out)
    writer.__enter__()
    (tmp_path / "other.json").write_text("{}")
    (tmp_path / ".other.json.abc.tmp").write_text("")
    assert len(list(tmp_path.glob(".labels.json.*.tmp"))) == 1
    remove_temps(out)
    assert sorted(os.listdir(tmp_path)) == [".other.json.abc.tmp", "other.json"]  # only out's own temps
    remove_temps(tmp_path)
    assert os.listdir(tmp_path) == ["other.json"]
