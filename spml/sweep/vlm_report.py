"""Issue 21's tables, rendered from the vision-language study's reports (spml.sweep.vlm_study's report.json, one
per seed) alone: the teachers and their soft students against the cnn4 EM teacher and full labels, their shares of
the EM -> full gap at 8 and at 16 epochs, the per-seed figures and the costs.

    python -m spml.sweep.vlm_report seed0/report.json seed1/report.json seed2/report.json --out table.md

Means are over the reports; a share is taken per seed, then averaged."""

from __future__ import annotations

import click

from spml.cli_util import command

NAMES = {"zero-shot": "zero-shot, raw", "zero-shot-calibrated": "zero-shot, calibrated (`--calibrate`)",
         "vlm-linear": "VLM-linear EM teacher (`--mode linear`)", "cnn4-em": "cnn4 EM teacher (the reference)"}


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _teacher_names(reports: list[dict]) -> list[str]:
    return [n for n in reports[0]["teachers"] if all(n in r["teachers"] for r in reports)]


def _over(reports: list[dict], name: str, key) -> float | None:
    return _mean([key(r["teachers"][name]) for r in reports])


def _line(reports: list[dict], which: str, epochs: str) -> float | None:
    return _mean([r["references"][which][epochs] for r in reports])


def _epochs(reports: list[dict]) -> tuple[str, str]:
    """The reference lines' epoch counts: the regime's (8) and the conservative one (16)."""
    keys = list(reports[0]["references"]["em"])
    return keys[0], keys[-1]


def _shares(reports: list[dict], name: str, *epochs: str, student: bool = False) -> str:
    """The teacher's (or its student's) mean shares of the gap at each epoch count, per seed then averaged."""
    entry = (lambda t: t["student"]) if student else (lambda t: t)
    return " / ".join(_percent(_over(reports, name, lambda t, e=e: entry(t)["gap_share"][e])) for e in epochs)


def means_table(reports: list[dict]) -> list[str]:
    low, high = _epochs(reports)
    lines = [f"| teacher | teacher test mAP | its share of the gap, {low} / {high} ep | its labels' F1 at τ 0.5 / 0.75 "
             f"(positives per image) | soft student test mAP | student's share, {low} / {high} ep |",
             "|---|---|---|---|---|---|"]
    for name in _teacher_names(reports):
        labels = " / ".join(f"{_fmt(_over(reports, name, lambda t, k=k: t['labels'][k]['f1']), 3)} "
                            f"({_fmt(_over(reports, name, lambda t, k=k: t['labels'][k]['positives_per_image']))})"
                            for k in ("0.5", "0.75"))
        lines.append(f"| {NAMES.get(name, name)} | {_fmt(_over(reports, name, lambda t: t['test_map']))} "
                     f"| {_shares(reports, name, low, high)} | {labels} "
                     f"| {_fmt(_over(reports, name, lambda t: t['student']['test_map']))} "
                     f"| {_shares(reports, name, low, high, student=True)} |")
    truth = _mean([r["teachers"][_teacher_names(reports)[0]]["true_positives_per_image"] for r in reports])
    lines += ["", f"Reference lines (test mAP): cnn4 EM teacher {_fmt(_line(reports, 'em', low))} at {low} epochs, "
              f"{_fmt(_line(reports, 'em', high))} at {high}; full labels {_fmt(_line(reports, 'full', low))} at {low}, "
              f"{_fmt(_line(reports, 'full', high))} at {high}. True positives per training image: {_fmt(truth)}."]
    return lines


def soft_targets_table(reports: list[dict]) -> list[str]:
    """What each soft student fits, on the pairs the single positives leave unknown (spml.sweep.run's
    soft_target_quality): the mean target against the share that are true, the targets' BCE against the truth,
    and the mAP of the targets as a ranking of those pairs."""
    truth = _mean([r["teachers"][_teacher_names(reports)[0]]["soft_targets"]["truth_rate"] for r in reports])
    lines = [f"| teacher | mean soft target (truly positive: {_fmt(truth, 3)}) | BCE against the truth "
             "| mAP of the targets |", "|---|---|---|---|"]
    for name in _teacher_names(reports):
        q = {k: _over(reports, name, lambda t, k=k: t["soft_targets"][k]) for k in ("mean_target", "bce", "map")}
        lines.append(f"| {NAMES.get(name, name)} | {_fmt(q['mean_target'], 3)} | {_fmt(q['bce'], 3)} | {_fmt(q['map'])} |")
    return lines


def seeds_table(reports: list[dict]) -> list[str]:
    low, high = _epochs(reports)
    seeds = [str(r["seed"]) for r in reports]
    lines = ["| test mAP, seed | " + " | ".join(seeds) + " | mean |", "|---|" + "---|" * (len(seeds) + 1)]

    def row(label, values):
        return f"| {label} | " + " | ".join(_fmt(v) for v in values) + f" | {_fmt(_mean(values))} |"

    for name in _teacher_names(reports):
        if name != "cnn4-em":
            lines.append(row(f"{NAMES.get(name, name)}: teacher", [r["teachers"][name]["test_map"] for r in reports]))
            lines.append(row(f"{NAMES.get(name, name)}: teacher minus the EM teacher ({low} ep)",
                             [r["teachers"][name]["test_map"] - r["references"]["em"][low] for r in reports]))
        lines.append(row(f"{NAMES.get(name, name)}: soft student", [r["teachers"][name]["student"]["test_map"]
                                                                     for r in reports]))
    for which, label in (("em", "cnn4 EM teacher"), ("full", "full labels")):
        for epochs in (low, high):
            lines.append(row(f"{label}, {epochs} epochs", [r["references"][which][epochs] for r in reports]))
    return lines


def costs_table(reports: list[dict]) -> list[str]:
    lines = ["| teacher | its training | passes over the training images | wall seconds, teacher + its labels "
             "| wall seconds, its student |", "|---|---|---|---|---|"]
    for name in _teacher_names(reports):
        cost = reports[0]["teachers"][name]["cost"]
        trainings = "; ".join(f"{t['what']}" + (f", {t['epochs']} epochs" if t["epochs"] else "")
                              for t in cost["teacher_trainings"]) or "none"
        passes = f"{cost['labeling_passes']} labeling" + (f" + {cost['other_passes']}: {cost['other_passes_are']}"
                                                           if cost["other_passes"] else "")
        teacher_steps = ("export", "train", "labeling pass")
        teacher = _mean([sum(r["teachers"][name]["cost"]["seconds"].get(s, 0) for s in teacher_steps) for r in reports])
        student = _mean([r["teachers"][name]["cost"]["seconds"].get("student") for r in reports])
        note = " (+ the teacher's training, not timed here)" if cost.get("seconds_note") else ""
        lines.append(f"| {NAMES.get(name, name)} | {trainings} | {passes} | {_fmt(teacher, 0)}{note} | {_fmt(student, 0)} |")
    return lines


def checks_lines(reports: list[dict]) -> list[str]:
    lines = []
    for r in reports:
        calibration = r["teachers"].get("zero-shot-calibrated", {}).get("calibration") or {}
        overlap = r["vlm"]["overlap"]
        held = ", ".join(f"{k} {v:.3f}" for k, v in (calibration.get("held_out") or {}).items())
        scenes = ("the VLM was given, not drawn here: no scenes to compare" if overlap is None else
                  f"the VLM's {overlap['vlm_scenes']} scenes (generator seed {overlap['scene_seed']}) against the "
                  f"data's {sum(overlap['data_images'].values())} images: {overlap['coinciding']} coincide")
        lines.append(f"- seed {r['seed']}: calibration kept {calibration.get('method')} (T "
                     f"{_fmt(calibration.get('temperature'))}; held-out F1 {held}); {scenes}.")
    return lines


def vlm_markdown(reports: list[dict]) -> str:
    """The study's tables: means over `reports` (one per seed), each seed's figures, the costs, the checks."""
    seeds = ", ".join(str(r["seed"]) for r in reports)
    lines = [f"### Means over seeds {seeds}", ""] + means_table(reports)
    lines += ["", "### What the soft students fit: the targets on the unknown pairs of the training images", ""]
    lines += soft_targets_table(reports)
    lines += ["", "### Per seed", ""] + seeds_table(reports)
    lines += ["", "### Costs (seed " + str(reports[0]["seed"]) + "'s trainings; seconds: means over the seeds)", ""]
    lines += costs_table(reports)
    lines += ["", "### Calibration and the VLM's scenes", ""] + checks_lines(reports)
    return "\n".join(lines) + "\n"


@command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the tables here (and print them).")
def main(reports, out):
    """Render the study's tables from its report.json files (one per seed)."""
    from spml.data.json_stream import load_json
    from spml.files import write_text

    text = vlm_markdown([load_json(p, "report") for p in reports])
    if out:
        write_text(out, text)
    click.echo(text, nl=False)


if __name__ == "__main__":
    main()
