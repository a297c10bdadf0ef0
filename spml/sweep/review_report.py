"""The targeted-review study's table and plot, rendered from sweep reports (report.json) alone: the `review:...`
variants with their answers, their labels' quality against the ground truth, their student's test mAP and its
share of the EM -> full-labels gap at equal epochs (issue 20, section 4).

    python -m spml.sweep.review_report seed0/report.json [seed1/report.json ...] --out README-table.md --plot gap.png

With several reports (one per seed), each figure is the mean over the seeds and the shares are taken per seed,
then averaged."""

from __future__ import annotations

from pathlib import Path

import click

from spml.cli_util import command
from spml.sweep.variants import parse_variant

REFERENCES = ("init-soft",)  # students without answers, shown beside the review variants


def review_entries(report: dict) -> list[tuple[dict, object]]:
    """(entry, Variant) of every review variant of a report, in report order."""
    out = []
    for entry in report.get("variants", []):
        v = parse_variant(entry["variant"])
        if v.base == "review":
            out.append((entry, v))
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _per_variant(reports: list[dict], key) -> dict:
    """{variant name: mean over the reports of key(entry)} for the variants every report has."""
    names = [e["variant"] for e in reports[0].get("variants", [])]
    rows = {}
    for name in names:
        entries = [next((e for e in r.get("variants", []) if e["variant"] == name), None) for r in reports]
        if all(e is not None for e in entries):
            rows[name] = _mean([key(e) for e in entries])
    return rows


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _equal(reports: list[dict]) -> dict:
    lines = [r.get("equal_epochs") or {} for r in reports]
    epochs = {line.get("epochs") for line in lines}
    return {"epochs": epochs.pop() if len(epochs) == 1 else None, "em": _mean([line.get("em") for line in lines]),
            "full": _mean([line.get("full") for line in lines])}


def _truth(mean: dict) -> str:
    rates = {round(v, 3) for v in mean["soft_truth_rate"].values() if v is not None}
    return "-" if not rates else " / ".join(f"{r:.3f}" for r in sorted(rates))


def review_markdown(reports: list[dict]) -> str:
    """The study's table: one row per review variant (and the reference students), means over `reports`."""
    equal = _equal(reports)
    n = len(reports)
    seeds = ", ".join(str(r["config"]["train"].get("seed")) for r in reports)
    epochs = reports[0]["config"]["train"].get("epochs")
    em8, full8 = _mean([r["teachers"][r["config"]["teacher_loss"]] for r in reports]), _mean([r["full"] for r in reports])
    lines = [f"# Targeted review, measured ({'seed' if n == 1 else 'means over seeds'} {seeds})", "",
             f"Reference lines: EM teacher {_fmt(em8)} and full labels {_fmt(full8)} at {epochs} epochs; "
             f"EM {_fmt(equal['em'])} and full labels {_fmt(equal['full'])} at {equal['epochs']} epochs, the longest "
             f"training here (a model started from another's weights counts both trainings' epochs).", "",
             f"| variant | answers: yes / no | labels: precision / recall / F1 | soft targets: mean / BCE / mAP "
             f"| teacher test mAP | student test mAP | share of the gap at equal epochs ({equal['epochs']}) "
             f"| share at {epochs} epochs (as before) |",
             "|---|---|---|---|---|---|---|---|"]
    columns = {
        "yes": lambda e: (e.get("answers") or {}).get("yes"), "no": lambda e: (e.get("answers") or {}).get("no"),
        "precision": lambda e: e.get("precision"), "recall": lambda e: e.get("recall"), "f1": lambda e: e.get("f1"),
        "teacher": lambda e: e.get("teacher_map"), "map": lambda e: e["map"],
        **{f"soft_{k}": (lambda k: lambda e: (e.get("soft_targets") or {}).get(k))(k)
           for k in ("mean_target", "bce", "map", "truth_rate")},
        "equal": lambda e: e.get("gap_share_equal_epochs"), "share": lambda e: e.get("gap_share"),
    }
    mean = {key: _per_variant(reports, f) for key, f in columns.items()}
    wanted = sorted((name for name in mean["map"] if name in REFERENCES or parse_variant(name).base == "review"),
                    key=sort_key)
    for name in wanted:
        answers = "-" if mean["yes"][name] is None else f"{mean['yes'][name]:,.0f} / {mean['no'][name]:,.0f}"
        quality = " / ".join(_fmt(mean[k][name], 3) for k in ("precision", "recall", "f1"))
        soft = "-" if mean["soft_bce"][name] is None else \
            f"{_fmt(mean['soft_mean_target'][name], 3)} / {_fmt(mean['soft_bce'][name], 3)} / {_fmt(mean['soft_map'][name])}"
        lines.append(f"| {name} | {answers} | {quality} | {soft} | {_fmt(mean['teacher'][name])} | {_fmt(mean['map'][name])} "
                     f"| {_percent(mean['equal'][name])} | {_percent(mean['share'][name])} |")
    lines += ["", "Share of the gap: (student − EM) / (full − EM) per seed, then averaged; at equal epochs against "
              f"the EM teacher and the full-label model trained {equal['epochs']} epochs (teacher+epochs:"
              f"{equal['epochs']}, full+epochs:{equal['epochs']}), as long as the longest training here (a review "
              f"variant's teacher and its student, or each of its rounds' students, together). Teacher test mAP: the retrained teacher's; '-' where the first teacher labels "
              f"(+fix). Labels: the student's labels file against the ground truth (positives above tau, verified "
              f"answers kept). Soft targets: what the student fits, on the pairs the single positives leave unknown: "
              f"their mean (the truth's share of positives there is {_truth(mean)}), their binary cross-entropy "
              f"against the truth, and their mAP as a ranking of those pairs.", ""]
    lines += _rounds_lines(reports, wanted)
    return "\n".join(lines)


def _rounds_lines(reports: list[dict], names: list[str]) -> list[str]:
    """For the variants asked in rounds (+rounds:R): each round's answers and its student's test mAP (or its
    retrained teacher's), means over the reports."""
    out = []
    for name in names:
        if parse_variant(name).base != "review" or parse_variant(name).review.rounds == 1:
            continue
        per_report = [next(e for e in r["variants"] if e["variant"] == name)["review_rounds"] for r in reports]
        parts = []
        for k in range(len(per_report[0])):
            rounds = [p[k] for p in per_report]
            model = "student" if "map" in rounds[0] else "teacher"
            parts.append(f"round {k + 1}: {_mean([r['yes'] for r in rounds]):,.0f} yes / "
                         f"{_mean([r['no'] for r in rounds]):,.0f} no, {model} test mAP "
                         f"{_fmt(_mean([r.get('map', r.get('teacher_map')) for r in rounds]))}")
        out.append(f"{name}, by round: " + "; ".join(parts) + ".")
    return out + [""] if out else []


USES = {"retrain": ("retrain the teacher", "s", "--"), "fix": ("correct the labels (fix)", "o", "-"),
        "cal": ("calibrate and correct (cal)", "^", "-."), "staged": ("half at random, calibrate (staged)", "D", ":")}
STRATEGY_ORDER = ("random", "uncertainty", "weighted")


def use_of(v) -> str:
    """How a review variant uses its answers: retrain, fix, cal or staged."""
    r = v.review
    return "staged" if r.staged else "cal" if r.calibrate else "fix" if r.fix else "retrain"


def sort_key(name: str):
    """Review variants by budget, unit, strategy and use of the answers; the other variants first."""
    v = parse_variant(name)
    if v.base != "review":
        return (0, name)
    r = v.review
    return (1, r.per_image, r.unit != "pair", STRATEGY_ORDER.index(r.strategy) if r.strategy in STRATEGY_ORDER else 9,
            list(USES).index(use_of(v)), r.rounds, r.ipw, name)


def plot_review_gap(reports: list[dict], path: Path) -> None:
    """The share of the gap at equal epochs against the answers per image: one line per strategy (colour) and use
    of the answers (marker and line style), pair units; whole-image units as unjoined markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = _per_variant(reports, lambda e: e.get("gap_share_equal_epochs"))
    lines: dict[tuple, list] = {}
    for name, value in share.items():
        v = parse_variant(name)
        if v.base != "review" or value is None or v.train or v.teacher_loss or v.teacher_epochs or v.tta != "none" \
                or v.review.rounds > 1 or v.review.ipw:
            continue  # the plain review variants only: other options would mix settings in one line
        key = (v.review.unit, v.review.strategy, use_of(v))
        lines.setdefault(key, []).append((v.review.per_image, 100 * value))
    fig, ax = plt.subplots(figsize=(10, 4.6))
    colors = {"random": "tab:gray", "uncertainty": "tab:blue", "weighted": "tab:orange"}
    budgets = set()
    for (unit, strategy, use), points in sorted(lines.items(), key=lambda kv: (kv[0][0] != "pair", kv[0][1:])):
        points.sort()
        budgets.update(p[0] for p in points)
        label, marker, style = USES[use]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, linestyle=style if unit == "pair" else "none",
                color=colors.get(strategy, "black"), markerfacecolor="none" if unit != "pair" else None,
                label=f"{strategy}, {label}" + ("" if unit == "pair" else ", whole images"))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(50, color="tab:green", linestyle=":", label="goal: 50%")
    equal = _equal(reports)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(budgets), [f"{b:g}" for b in sorted(budgets)])
    ax.set_xlabel("answers per image")
    ax.set_ylabel(f"share of the EM → full gap, % (both {equal['epochs']} epochs)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Targeted review: the student's share of the gap at equal epochs")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


@command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the table here (and print it).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write the plot here (PNG).")
def main(reports, out, plot):
    from spml.data.json_stream import load_json
    from spml.files import write_text

    loaded = [load_json(p, "report") for p in reports]
    text = review_markdown(loaded)
    if out:
        write_text(out, text)
    if plot:
        plot_review_gap(loaded, Path(plot))
    click.echo(text)


if __name__ == "__main__":
    main()
