"""docs/vlm, issue 21's report: its tables are what spml's own code renders from the committed report.json files
(spml.sweep.vlm_report), one per seed: no number there is typed by hand."""

import json
from pathlib import Path

from spml.sweep.vlm_report import vlm_markdown

FOLDER = Path(__file__).resolve().parents[2] / "docs" / "vlm"
BEGIN, END = "<!-- tables: rendered from seed*/report.json -->", "<!-- end of tables -->"


def test_the_readme_tables_are_rendered_from_the_reports():
    paths = sorted(FOLDER.glob("seed*/report.json"))
    assert [p.parent.name for p in paths] == ["seed0", "seed1", "seed2"]
    text = (FOLDER / "README.md").read_text()
    tables = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert tables.strip() == vlm_markdown([json.loads(p.read_text()) for p in paths]).strip()


def test_the_reports_reference_lines_are_the_review_studys_sweeps():
    """The EM and full-label lines the shares are taken against are those of docs/review's sweep of the same
    seed (the same data, the pretrained regime), at 8 epochs and at 16."""
    for seed in (0, 1, 2):
        report = json.loads((FOLDER / f"seed{seed}" / "report.json").read_text())
        sweep = json.loads((FOLDER.parent / "review" / f"seed{seed}" / "report.json").read_text())
        by_name = {v["variant"]: v["map"] for v in sweep["variants"]}
        assert report["references"]["em"] == {"8": sweep["teachers"]["em"], "16": by_name["teacher+epochs:16"]}
        assert report["references"]["full"] == {"8": sweep["full"], "16": by_name["full+epochs:16"]}
        assert report["teachers"]["cnn4-em"]["test_map"] == sweep["teachers"]["em"]
