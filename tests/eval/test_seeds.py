from spml.eval.seeds import paired_gains, seeds_markdown


def report(seed, em, hard, soft):
    return {"teachers": {"an": 40.0, "em": em}, "students": [{"tau": 0.75, "map": hard}],
            "variants": [{"variant": "soft", "tau": 0.75, "map": soft}], "config": {"train": {"seed": seed}}}


def test_gains_are_paired_by_seed():
    reports = [report(0, 50.0, 49.0, 51.5), report(1, 52.0, 51.0, 52.5), report(2, 48.0, 50.0, 47.0)]
    gains = paired_gains(reports)
    assert gains["soft (tau 0.75)"]["gain"] == [1.5, 0.5, -1.0]
    assert gains["soft (tau 0.75)"]["mean_gain"] == 1.0 / 3
    assert gains["tau 0.75"]["gain"] == [-1.0, -1.0, 2.0]
    text = seeds_markdown(reports)
    assert "| student soft (tau 0.75) | 51.50 (+1.50) | 52.50 (+0.50) | 47.00 (-1.00) | 50.33 | +0.33 |" in text
    assert "| EM teacher | 50.00 | 52.00 | 48.00 | 50.00 | |" in text


def test_a_variant_missing_from_one_seed_is_left_out():
    reports = [report(0, 50.0, 49.0, 51.5), dict(report(1, 52.0, 51.0, 52.5), variants=[])]
    assert list(paired_gains(reports)) == ["tau 0.75"]
