"""The recipe study (docs/recipe): its tables are what spml.sweep.recipe_report renders from the committed
report.json files, and the renderer's shares and verdict are checked against values worked out by hand."""

import json
from pathlib import Path

import pytest

from spml.sweep.recipe_report import recipe_markdown, verdict

FOLDER = Path(__file__).resolve().parents[2] / "docs" / "recipe"
BEGIN, END = "<!-- tables: rendered from report.json -->", "<!-- end of tables -->"


def _report(seed, *, em24, full24, full64=None, em24_64=None, **candidates):
    names = {"em_soft": "init-soft+tepochs:16", "gr": "init-soft+tloss:gr+tepochs:16",
             "gr64": "init-soft+tloss:gr+tepochs:16+size:64", "em64": "init-soft+tepochs:16+size:64"}
    variants = [{"variant": "teacher+epochs:24", "map": em24}, {"variant": "full+epochs:24", "map": full24}]
    if full64 is not None:
        variants.append({"variant": "full+epochs:24+size:64", "map": full64})
    if em24_64 is not None:
        variants.append({"variant": "teacher+epochs:24+size:64", "map": em24_64})
    variants += [{"variant": names[k], "map": v, "teacher_map": v - 1} for k, v in candidates.items()]
    return {"teachers": {"an": 50.0, "em": 55.0}, "full": 62.0, "variants": variants,
            "config": {"train": {"seed": seed}}}


def test_shares_and_means_as_worked_out_by_hand():
    reports = [_report(0, em24=60.0, full24=70.0, full64=68.0, em24_64=62.0, gr=65.0, gr64=66.0, em_soft=59.0),
               _report(1, em24=62.0, full24=72.0, gr=64.0, gr64=67.0, em_soft=61.0)]  # no 64-px full line
    text = recipe_markdown({"toy": reports})
    # gr: +5.00 and +2.00 over EM 24 -> shares 50.0% and 20.0%, mean +3.50 and 35.0%
    assert "| `init-soft+tloss:gr+tepochs:16` | 63.50 | +5.00, +2.00 | +3.50 | 50.0%, 20.0% | 35.0% | - |" in text
    # gr64: 60%, 50% against full 24 at 32 px; against full at 64 px seed 0 only: (66 - 60) / (68 - 60) = 75%;
    # EM and full both at 64 px, seed 0 only: (66 - 62) / (68 - 62) = 66.7%
    assert ("| `init-soft+tloss:gr+tepochs:16+size:64` | 65.50 | +6.00, +5.00 | +5.50 | 60.0%, 50.0% | 55.0% "
            "| 75.0% (1 seed) | 66.7% (1 seed) |") in text
    assert "| EM teacher at 64 px (`teacher+epochs:24+size:64`) | 24 | 62.00 | - | 62.00 (1 seed) |" in text
    assert "| full labels at 64 px (`full+epochs:24+size:64`) | 24 | 68.00 | - | 68.00 (1 seed) |" in text
    assert "| EM teacher | 8 | 55.00 | 55.00 | 55.00 |" in text
    assert "| `init-soft+tepochs:16+size:64` | - | -, - | - | -, - | - | - | - |" in text  # in neither report


def test_the_verdict_needs_a_win_on_every_dataset():
    a = [_report(0, em24=60.0, full24=70.0, gr=65.0, gr64=61.0, em_soft=59.0)]
    b = [_report(0, em24=60.0, full24=70.0, gr=59.0, gr64=62.0, em_soft=58.0)]
    assert verdict({"a": a, "b": b}) == ["init-soft+tloss:gr+tepochs:16+size:64"]
    b_em64 = [_report(0, em24=60.0, full24=70.0, gr=59.0, gr64=62.0, em_soft=58.0, em64=63.0)]
    a_em64 = [_report(0, em24=60.0, full24=70.0, gr=65.0, gr64=61.0, em_soft=59.0, em64=62.0)]
    assert verdict({"a": a_em64, "b": b_em64}) == ["init-soft+tepochs:16+size:64", "init-soft+tloss:gr+tepochs:16+size:64"]
    assert verdict({"a": a}) == ["init-soft+tloss:gr+tepochs:16", "init-soft+tloss:gr+tepochs:16+size:64"]
    # the EM line at 64 px, where measured, is what a 64-px candidate must beat: 61 < 62 leaves it out
    a_size = [_report(0, em24=60.0, full24=70.0, full64=71.0, em24_64=62.0, gr=65.0, gr64=61.0, em_soft=59.0)]
    assert verdict({"a": a_size}) == ["init-soft+tloss:gr+tepochs:16"]
    assert verdict({"b": [_report(0, em24=60.0, full24=70.0, gr=59.0, gr64=60.0, em_soft=58.0)]}) == []
    assert "on a and b: **none**." in recipe_markdown({"a": a, "b": [_report(0, em24=60.0, full24=70.0, gr=59.0)]})


def test_the_published_tables_are_rendered_from_the_reports():
    datasets = {}
    for name in ("shapes", "scenes"):
        paths = sorted((FOLDER / name).glob("seed*/report.json"))
        if not paths:
            pytest.fail(f"no report.json under docs/recipe/{name}")
        datasets[name] = [json.loads(p.read_text()) for p in paths]
    text = (FOLDER / "README.md").read_text()
    assert text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip() == recipe_markdown(datasets).strip()


def test_the_command_prints_and_writes_the_tables(tmp_path):
    from click.testing import CliRunner

    from spml.sweep.recipe_report import load_folder, main

    out = tmp_path / "tables.md"
    result = CliRunner().invoke(main, [str(FOLDER / "shapes"), str(FOLDER / "scenes"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = recipe_markdown({n: load_folder(FOLDER / n) for n in ("shapes", "scenes")})
    assert out.read_text() == expected
    assert result.output.strip() == expected.strip()
    result = CliRunner().invoke(main, [str(tmp_path), "--out", str(tmp_path / "none.md")])  # no seed*/report.json
    assert result.exit_code == 1 and "no seed*/report.json there" in result.output
    assert not (tmp_path / "none.md").exists()
