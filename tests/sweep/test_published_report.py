"""The sweep tables published in docs/sweep-builtin and docs/sweep-builtin-pretrained are what spml's report code
renders from the committed report.json files: no number there is typed by hand."""

import json
from pathlib import Path

import pytest

from spml.eval.seeds import seeds_markdown
from spml.sweep.run import report_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"
FOLDERS = [DOCS / "sweep-builtin", DOCS / "sweep-builtin-pretrained", DOCS / "sweep-students"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_report_is_rendered_from_its_json(folder):
    reports = sorted(folder.glob("seed*/report.json"))
    assert len(reports) >= 3
    rendered = [p for p in reports if p.with_name("report.md").exists()]  # sweep-builtin renders seed0's only
    assert rendered and rendered[0].parent.name == "seed0"
    for path in rendered:
        assert path.with_name("report.md").read_text() == report_markdown(json.loads(path.read_text()))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_the_seed_table_is_rendered_from_every_seeds_json(folder):
    reports = sorted(folder.glob("seed*/report.json"))
    assert (folder / "seeds.md").read_text() == seeds_markdown([json.loads(p.read_text()) for p in reports])
