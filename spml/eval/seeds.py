"""Paired comparison over seeds: for each sweep report (one seed, teacher and students trained with it), each
variant's student mAP minus its own seed's teacher mAP, and the mean gain. Read from report.json files only.

    python -m spml.eval.seeds report/seed0/report.json report/seed1/report.json ... --out seeds.md
"""

from __future__ import annotations

import click

from spml.cli_util import command


def paired_gains(reports: list[dict], teacher: str = "em") -> dict:
    """{variant: {"seeds": [seed...], "teacher": [...], "student": [...], "gain": [...], "mean_gain": x}} for every
    variant (and the hard-threshold student of each tau) present in all reports."""
    def students(report):
        rows = {f"tau {s['tau']:g}": s["map"] for s in report["students"]}
        rows.update({(f"{v['variant']} (no student)" if v["variant"].split("+")[0] in ("teacher", "full")
                      else f"{v['variant']} (tau {v['tau']:g})"): v["map"] for v in report.get("variants", [])})
        return rows

    per_report = [students(r) for r in reports]
    names = [n for n in per_report[0] if all(n in rows for rows in per_report)]
    out = {}
    for name in names:
        teacher_maps = [r["teachers"][teacher] for r in reports]
        student_maps = [rows[name] for rows in per_report]
        gains = [s - t for s, t in zip(student_maps, teacher_maps)]
        fulls = [r.get("full") for r in reports]
        shares = ([g / (f - t) for g, f, t in zip(gains, fulls, teacher_maps)]
                  if all(f is not None and f != t for f, t in zip(fulls, teacher_maps)) else None)
        out[name] = {"seeds": [r["config"]["train"].get("seed") for r in reports], "teacher": teacher_maps,
                     "student": student_maps, "gain": gains, "mean_gain": sum(gains) / len(gains),
                     "gap_share": shares, "mean_gap_share": sum(shares) / len(shares) if shares else None}
    return out


def seeds_markdown(reports: list[dict], teacher: str = "em") -> str:
    gains = paired_gains(reports, teacher)
    seeds = [r["config"]["train"].get("seed") for r in reports]
    head = " | ".join(f"seed {s}" for s in seeds)
    share = bool(gains) and all(g["gap_share"] is not None for g in gains.values())
    lines = [f"# {teacher.upper()} teacher vs its students, paired by seed", "",
             f"| model | {head} | mean | mean gain over the teacher |" + (" mean share of the gap to full labels |" if share else ""),
             "|---" * (len(seeds) + 3 + share) + "|"]
    t = [r["teachers"][teacher] for r in reports]
    lines.append(f"| {teacher.upper()} teacher | " + " | ".join(f"{v:.2f}" for v in t) + f" | {sum(t) / len(t):.2f} | |"
                 + (" |" if share else ""))
    if share:
        f = [r["full"] for r in reports]
        lines.append("| full labels | " + " | ".join(f"{v:.2f}" for v in f) + f" | {sum(f) / len(f):.2f} | | 100% |")
    for name, g in gains.items():
        cells = " | ".join(f"{s:.2f} ({d:+.2f})" for s, d in zip(g["student"], g["gain"]))
        lines.append(f"| {'' if name.endswith('(no student)') else 'student '}{name} | {cells} | {sum(g['student']) / len(seeds):.2f} | {g['mean_gain']:+.2f} |"
                     + (f" {100 * g['mean_gap_share']:.1f}% |" if share else ""))
    note = "Cells: student test mAP (gain over the same seed's teacher)."
    if share:
        note += (" Share of the gap: (student - teacher) / (full labels - teacher) per seed, then averaged over"
                 " the seeds.")
    return "\n".join(lines + ["", note, ""])


@command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--teacher", default="em", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the table here (and print it).")
def main(reports, teacher, out):
    from spml.data.json_stream import load_json
    from spml.files import write_text

    text = seeds_markdown([load_json(p, "report") for p in reports], teacher)
    if out:
        write_text(out, text)
    click.echo(text)


if __name__ == "__main__":
    main()
