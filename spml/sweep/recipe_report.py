"""The recipe study's tables, rendered from sweep reports (report.json) alone: each candidate recipe against the
EM teacher and the full-label model trained as many epochs (24: a 16-epoch teacher and an 8-epoch student), on
each built-in dataset, per seed and as means (issue 20, "A recipe that transfers").

    python -m spml.sweep.recipe_report docs/recipe/shapes docs/recipe/scenes --out docs/recipe/tables.md

Each folder is one dataset (its name is the dataset's) holding seed*/report.json. A variant missing from a seed's
report is shown as '-' and left out of that row's means, which then say over how many seeds they are.
"""

from __future__ import annotations

from pathlib import Path

import click

from spml.cli_util import command

EPOCHS = 24
EM_LINE, FULL_LINE = f"teacher+epochs:{EPOCHS}", f"full+epochs:{EPOCHS}"
EM_LINE_64, FULL_LINE_64 = f"teacher+epochs:{EPOCHS}+size:64", f"full+epochs:{EPOCHS}+size:64"
# the EM teacher at 64 px given the recipe's compute rather than its epochs: 16 epochs at 32 px + 8 at 64 px cost
# about what 12 epochs at 64 px do (a 64-px epoch has 4x the pixels)
EM_LINE_64_COMPUTE = "teacher+epochs:12+size:64"
# (what it is, variant, the EM and full-label lines at its input size besides the 32-px ones)
CANDIDATES = [
    ("EM teacher 16 epochs, soft student 8", "init-soft+tepochs:16", None),
    ("GR teacher 16 epochs, soft student 8", "init-soft+tloss:gr+tepochs:16", None),
    ("GR teacher 16 epochs, soft student 8 at 64 px", "init-soft+tloss:gr+tepochs:16+size:64", (EM_LINE_64, FULL_LINE_64)),
    # the control: is it the GR teacher or the 64-px student?
    ("EM teacher 16 epochs, soft student 8 at 64 px", "init-soft+tepochs:16+size:64", (EM_LINE_64, FULL_LINE_64)),
]
DATASETS = {"shapes": "spml/data/demo.py: 10 flat-coloured shapes, pairs that co-occur",
            "scenes": "spml/data/scenes.py: 24 textured categories, group-wise co-occurrence in 6 scene types"}


def _variant_map(report: dict, name: str, key: str = "map") -> float | None:
    return next((v.get(key) for v in report.get("variants", []) if v["variant"] == name), None)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _share(value, em, full) -> float | None:
    if value is None or em is None or full is None or full == em:
        return None
    return (value - em) / (full - em)


def _fmt(value, digits: int = 2, sign: bool = False) -> str:
    return "-" if value is None else f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _over(values) -> str:
    """' (2 seeds)' where a mean is over fewer seeds than the table has."""
    n, present = len(values), sum(v is not None for v in values)
    return "" if present in (0, n) else f" ({present} seed{'s' if present > 1 else ''})"


def candidate_rows(reports: list[dict]) -> list[dict]:
    """Per candidate: its test mAP per seed, its teacher's, its difference to the EM line, its shares of the gap
    (against the 32-px lines; against the 32-px EM line and the full line at its own input size; and against both
    lines at its own input size, where it has them)."""
    em = [_variant_map(r, EM_LINE) for r in reports]
    full = [_variant_map(r, FULL_LINE) for r in reports]
    rows = []
    for label, variant, own_lines in CANDIDATES:
        maps = [_variant_map(r, variant) for r in reports]
        own_em, own = ([[_variant_map(r, line) for r in reports] for line in own_lines] if own_lines
                       else (None, None))
        rows.append({
            "label": label, "variant": variant, "maps": maps,
            "teacher": [_variant_map(r, variant, "teacher_map") for r in reports],
            "vs_em": [None if m is None or e is None else m - e for m, e in zip(maps, em)],
            "share": [_share(m, e, f) for m, e, f in zip(maps, em, full)],
            "share_own": [_share(m, e, f) for m, e, f in zip(maps, em, own)] if own else None,
            "share_size": [_share(m, e, f) for m, e, f in zip(maps, own_em, own)] if own else None,
        })
    return rows


def dataset_markdown(name: str, reports: list[dict]) -> str:
    seeds = [r["config"]["train"].get("seed") for r in reports]
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [f"### {name}" + (f" ({DATASETS[name]})" if name in DATASETS else ""), "",
             f"| model | epochs | {head} | mean |", "|---|---|" + "---|" * (len(seeds) + 1)]

    def line(label, epochs, values):
        lines.append(f"| {label} | {epochs} | " + " | ".join(_fmt(v) for v in values)
                     + f" | {_fmt(_mean(values))}{_over(values)} |")

    line("AN teacher", 8, [r["teachers"].get("an") for r in reports])
    line("EM teacher", 8, [r["teachers"].get("em") for r in reports])
    line("full labels", 8, [r.get("full") for r in reports])
    line(f"**EM teacher** (`{EM_LINE}`)", EPOCHS, [_variant_map(r, EM_LINE) for r in reports])
    line(f"**full labels** (`{FULL_LINE}`)", EPOCHS, [_variant_map(r, FULL_LINE) for r in reports])
    line(f"EM teacher at 64 px (`{EM_LINE_64}`)", EPOCHS, [_variant_map(r, EM_LINE_64) for r in reports])
    line(f"full labels at 64 px (`{FULL_LINE_64}`)", EPOCHS, [_variant_map(r, FULL_LINE_64) for r in reports])
    line(f"EM teacher at 64 px, the recipe's compute (`{EM_LINE_64_COMPUTE}`)", 12,
         [_variant_map(r, EM_LINE_64_COMPUTE) for r in reports])
    rows = candidate_rows(reports)
    for row in rows:
        line(f"{row['label']} (`{row['variant']}`)", "16 + 8", row["maps"])
    lines += ["", f"| candidate | its teacher alone (16 epochs), mean | vs EM {EPOCHS}, per seed "
                  f"| mean vs EM {EPOCHS} | share of the gap, per seed | mean share "
                  f"| mean share against full at its input size | mean share, EM and full both at its input size |",
              "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        own, size = ("-" if row[k] is None else f"{_pct(_mean(row[k]))}{_over(row[k])}" for k in ("share_own", "share_size"))
        lines.append(f"| `{row['variant']}` | {_fmt(_mean(row['teacher']))}{_over(row['teacher'])} | "
                     + ", ".join(_fmt(v, sign=True) for v in row["vs_em"])
                     + f" | {_fmt(_mean(row['vs_em']), sign=True)}{_over(row['vs_em'])} | "
                     + ", ".join(_pct(v) for v in row["share"]) + f" | {_pct(_mean(row['share']))}{_over(row['share'])} "
                     f"| {own} | {size} |")
    return "\n".join(lines + [""])


def verdict(datasets: dict[str, list[dict]]) -> list[str]:
    """The candidates whose mean over the seeds beats the EM teacher trained as long on every dataset (at the
    candidate's input size where the reports have that EM line), best first by their smallest mean share over the
    datasets."""
    means = {}
    for name, reports in datasets.items():
        for row in candidate_rows(reports):
            at_size = _mean(row["share_size"]) if row["share_size"] is not None else None
            means.setdefault(row["variant"], {})[name] = _mean(row["share"]) if at_size is None else at_size
    winners = [v for v, by in means.items() if len(by) == len(datasets) and all(s is not None and s > 0 for s in by.values())]
    return sorted(winners, key=lambda v: -min(means[v].values()))


def recipe_markdown(datasets: dict[str, list[dict]]) -> str:
    """One table per dataset, then which candidates beat EM trained as long on all of them."""
    parts = [dataset_markdown(name, reports) for name, reports in datasets.items()]
    winners = verdict(datasets)
    names = " and ".join(datasets)
    parts.append(f"Candidates whose mean beats the EM teacher trained {EPOCHS} epochs (at the candidate's input "
                 f"size where measured) on {names}: "
                 + (", ".join(f"`{w}`" for w in winners) if winners else "**none**") + ".")
    parts.append(f"Share of the gap: (candidate − EM {EPOCHS}) / (full {EPOCHS} − EM {EPOCHS}) per seed, then "
                 f"averaged; a candidate's epochs count its teacher's and its student's (16 + 8). The 64-px "
                 f"candidates are also measured against full labels at 64 px, and against EM and full labels both at 64 px, "
                 f"{EPOCHS} epochs. '-': not in that seed's report.")
    return "\n\n".join(parts) + "\n"


def load_folder(folder: str | Path) -> list[dict]:
    from spml.data.json_stream import load_json
    from spml.errors import SpmlError

    paths = sorted(Path(folder).glob("seed*/report.json"))
    if not paths:
        raise SpmlError(f"{folder}: no seed*/report.json there") from None
    return [load_json(p, "report") for p in paths]


@command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the tables here (and print them).")
def main(folders, out):
    from spml.files import write_text

    text = recipe_markdown({Path(f).name: load_folder(f) for f in folders})
    if out:
        write_text(out, text)
    click.echo(text)


if __name__ == "__main__":
    main()
