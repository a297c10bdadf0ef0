"""The demo's three-seed table in docs/demo-seeds is rendered from the committed eval reports, and shows the
orderings the demo claims."""

from pathlib import Path

from spml.eval.demo_table import demo_maps, orderings, seeds_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "demo-seeds"
SEEDS = sorted(str(p) for p in DOCS.glob("seed*") if p.is_dir())


def test_the_table_is_rendered_from_the_reports():
    assert len(SEEDS) >= 3
    assert seeds_markdown(SEEDS) in (DOCS / "README.md").read_text()


def test_the_orderings_hold_on_every_seed():
    for seed in SEEDS:
        assert all(orderings(demo_maps(seed)).values()), seed


def test_an_ordering_that_fails_is_reported():
    maps = {"an_teacher": 60.0, "teacher": 61.0, "student": 60.5, "full": 70.0}
    assert orderings(maps) == {"EM > AN + 1.5": False, "student > EM": False, "full > student": True}
