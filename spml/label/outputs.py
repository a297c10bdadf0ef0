"""spml-label's outputs besides labels.json: the same scores written as FiftyOne, CSV or Parquet in one pass."""

from __future__ import annotations

from pathlib import Path

from spml.data.formats import LabelRows, output_path, remove_folder_temps, write_format
from spml.errors import SpmlError
from spml.files import remove_temps


def planned_paths(out, formats: list[str], taus) -> dict[tuple[str, float], Path]:
    """(format, τ) -> path, refusing two outputs on one path (--out labels.csv --format coco,csv)."""
    paths = {(fmt, t): output_path(out, fmt, t, len(taus) > 1) for t in taus for fmt in formats}
    seen: dict[Path, str] = {}
    for (fmt, _), p in paths.items():
        if p in seen and seen[p] != fmt:
            raise SpmlError(f"--format {seen[p]} and {fmt} would both write {p}; give --out another extension") from None
        seen[p] = fmt
    return paths


def write_other(fmt: str, path: Path, dataset, scores, tau, keep_observed: bool, rows, info: dict,
                csv_scores: bool) -> int:
    labels = LabelRows.from_scores(dataset, scores.values, tau, keep_observed, scores.failures, rows, info)
    return write_format(fmt, path, labels, csv_scores)


def remove_partial(paths) -> None:
    """Temp files and folders of outputs an interrupt stopped half-way."""
    for p in paths:
        remove_temps(p)
        remove_folder_temps(p)
