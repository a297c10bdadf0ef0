"""The sweep orchestrates the stages from above: no stage imports it, and its seed table runs as the docs run it
(that spml-sweep is the sweep's command: tests/test_cli_help.py)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import spml

ROOT = Path(spml.__file__).resolve().parent


def test_no_stage_imports_the_sweep():
    importers = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if p.parent.name != "sweep"
                 and re.search(r"^\s*(from|import) spml\.sweep", p.read_text(), re.MULTILINE)]
    assert importers == []


def test_the_seed_table_runs_as_a_module(tmp_path):
    """`python -m spml.eval.seeds REPORT... --out seeds.md`, as the sweep docs run it, writes and prints the table."""
    from spml.eval.seeds import seeds_markdown

    reports = [{"teachers": {"em": em}, "students": [{"tau": 0.75, "map": em + 1.5}], "config": {"train": {"seed": seed}}}
               for seed, em in ((0, 60.0), (1, 62.0))]
    paths = [tmp_path / f"seed{k}.json" for k in range(len(reports))]
    for path, report in zip(paths, reports):
        path.write_text(json.dumps(report))
    out = tmp_path / "seeds.md"
    proc = subprocess.run([sys.executable, "-m", "spml.eval.seeds", *map(str, paths), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = seeds_markdown(reports)
    assert "| student tau 0.75 | 61.50 (+1.50) | 63.50 (+1.50) | 62.50 | +1.50 |" in table  # by hand
    assert out.read_text() == table and proc.stdout == table + "\n"
