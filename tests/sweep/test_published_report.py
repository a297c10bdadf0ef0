"""The sweep tables published in docs/sweep-builtin are what spml's report code renders from the committed
report.json files: no number there is typed by hand."""

import json
from pathlib import Path

from spml.eval.seeds import seeds_markdown
from spml.sweep.run import report_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sweep-builtin"
SEEDS = sorted(DOCS.glob("seed*/report.json"))


def test_the_report_is_rendered_from_its_json():
    report = json.loads((DOCS / "seed0" / "report.json").read_text())
    assert (DOCS / "seed0" / "report.md").read_text() == report_markdown(report)


def test_the_seed_table_is_rendered_from_every_seeds_json():
    assert len(SEEDS) >= 3
    assert (DOCS / "seeds.md").read_text() == seeds_markdown([json.loads(p.read_text()) for p in SEEDS])
