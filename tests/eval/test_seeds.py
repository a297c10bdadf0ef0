"""The seeds table: paired gains and the share of the teacher -> full gap, recomputed by hand."""

import pytest

from spml.eval.seeds import paired_gains, seeds_markdown


def report(seed, em, full, student, reference):
    return {"teachers": {"an": em - 2, "em": em}, "full": full, "students": [{"tau": 0.75, "map": em - 1}],
            "variants": [{"variant": "init-soft", "tau": 0.75, "map": student},
                         {"variant": "teacher+epochs:16", "tau": 0.75, "map": reference}],
            "config": {"train": {"seed": seed}}}


def test_gap_shares_are_per_seed_then_averaged():
    reports = [report(0, 60.0, 70.0, 65.0, 62.0), report(1, 64.0, 68.0, 65.0, 66.0)]
    gains = paired_gains(reports)
    student = gains["init-soft (tau 0.75)"]
    assert student["gap_share"] == pytest.approx([0.5, 0.25]) and student["mean_gap_share"] == pytest.approx(0.375)
    assert gains["tau 0.75"]["gap_share"] == pytest.approx([-0.1, -0.25])
    text = seeds_markdown(reports)
    assert "| student init-soft (tau 0.75) | 65.00 (+5.00) | 65.00 (+1.00) | 65.00 | +3.00 | 37.5% |" in text
    assert "| teacher+epochs:16 (no student) | 62.00 (+2.00) | 66.00 (+2.00) | 64.00 | +2.00 | 35.0% |" in text
    assert "| full labels | 70.00 | 68.00 | 69.00 | | 100% |" in text


def test_without_full_labels_there_is_no_share_column():
    reports = [report(0, 60.0, None, 65.0, 62.0)]
    assert paired_gains(reports)["init-soft (tau 0.75)"]["gap_share"] is None
    assert "share of the gap" not in seeds_markdown(reports)
