"""docs/review, the targeted-review study: its tables and its plot are what spml's own code renders from the
committed report.json files (spml.sweep.review_report): no number there is typed by hand. The PNG is compared byte
for byte, as tests/sweep/test_sweep.py does: rendered with another matplotlib or FreeType it may differ."""

import json
from pathlib import Path

from spml.sweep.review_report import plot_review_gap, review_markdown

FOLDER = Path(__file__).resolve().parents[2] / "docs" / "review"
BEGIN, END = "<!-- table: rendered from report.json -->", "<!-- end of table -->"


def reports() -> list[dict]:
    paths = sorted(FOLDER.glob("seed*/report.json"))
    assert paths, "no report.json under docs/review"
    return [json.loads(p.read_text()) for p in paths]


def test_the_readme_table_is_rendered_from_the_reports():
    text = (FOLDER / "results.md").read_text()
    table = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert table.strip() == review_markdown(reports()).strip()


def test_the_plot_is_rendered_from_seed_0s_report(tmp_path):
    """Seed 0 has every budget; the other seeds, budget 1 alone."""
    plot_review_gap([json.loads((FOLDER / "seed0" / "report.json").read_text())], tmp_path / "gap.png")
    assert (tmp_path / "gap.png").read_bytes() == (FOLDER / "gap_share_vs_budget.png").read_bytes()


def test_each_seed_report_is_rendered_from_its_json():
    for path in sorted(FOLDER.glob("seed*/report.json")):
        assert path.with_name("review.md").read_text() == review_markdown([json.loads(path.read_text())])


ROUNDS = FOLDER / "rounds"
ROUNDS_BEGIN, ROUNDS_END = "<!-- rounds table: rendered from rounds/seed*/report.json -->", "<!-- end of rounds table -->"


def test_the_rounds_comparison_is_rendered_from_its_reports():
    """The budget asked in rounds is compared in reports of its own (their longest training, and so their equal-epoch
    lines, is longer than the main study's): rounds/review.md and results.md's rounds table are rendered from them."""
    paths = sorted(ROUNDS.glob("seed*/report.json"))
    assert len(paths) == 3
    table = review_markdown([json.loads(p.read_text()) for p in paths])
    assert (ROUNDS / "review.md").read_text() == table
    text = (FOLDER / "results.md").read_text()
    assert text[text.index(ROUNDS_BEGIN) + len(ROUNDS_BEGIN):text.index(ROUNDS_END)].strip() == table.strip()
