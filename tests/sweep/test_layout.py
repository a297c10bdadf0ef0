"""The sweep orchestrates the stages from above: no stage imports it, and spml-sweep still points at it."""

import re
from pathlib import Path

import spml

ROOT = Path(spml.__file__).resolve().parent


def test_no_stage_imports_the_sweep():
    importers = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if p.parent.name != "sweep"
                 and re.search(r"^\s*(from|import) spml\.sweep", p.read_text(), re.MULTILINE)]
    assert importers == []


def test_entry_point_and_seed_table_module():
    text = (ROOT.parent / "pyproject.toml").read_text()
    assert 'spml-sweep = "spml.sweep.cli:main"' in text
    from spml.eval.seeds import main  # python -m spml.eval.seeds, as docs/sweep-builtin runs it

    assert main.name == "main"
