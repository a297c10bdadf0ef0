"""spml-label's outputs besides labels.json: the same scores written as FiftyOne, CSV or Parquet in one pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    labels = LabelRows.from_scores(dataset, RowsOf(scores), tau, keep_observed, scores.failures, rows, info)
    return write_format(fmt, path, labels, csv_scores)


class RowsOf:
    """Row indexing (`[lo:hi]`, `[row array]`) over scores that are read in blocks (`Scores` in memory, or a job's
    chunk files), which is how the format writers take them: only the rows asked for are read."""

    def __init__(self, scores):
        self.scores = scores

    def _range(self, lo: int, hi: int) -> np.ndarray:
        parts = [values for _, values in self.scores.blocks(range(lo, hi))]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._range(index.start, index.stop)
        index = np.asarray(index, dtype=np.int64)
        lo = int(index.min())
        return self._range(lo, int(index.max()) + 1)[index - lo]


def remove_partial(paths) -> None:
    """Temp files and folders of outputs an interrupt stopped half-way."""
    for p in paths:
        remove_temps(p)
        remove_folder_temps(p)
