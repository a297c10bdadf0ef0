"""`spml-review simulate`: a questions file answered from a fully labeled COCO file, each answer flipped with
probability `error_rate` (a careless person), so a budget can be priced before anyone spends time on it."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from spml.data.coco import load_coco
from spml.errors import SpmlError
from spml.files import atomic_write
from spml.review.answers import parse_id
from spml.review.select import QUESTION_COLUMNS


def read_questions(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The CSV's columns, and its rows with the line each ends on."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            missing = [c for c in ("image_id", "category_id") if c not in columns]
            if missing:
                raise SpmlError(f"{path}: no column {', '.join(missing)} (expected the questions.csv of "
                                f"spml-review select)") from None
            rows = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise SpmlError(f"{path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise SpmlError(f"{path}: not a CSV file ({e})") from None
    return columns, rows


def simulate_answers(questions: str | os.PathLike, truth: str | os.PathLike, out: str | os.PathLike, *,
                     error_rate: float = 0.0, seed: int = 0) -> dict:
    """Write `out`: the questions with `answer` yes where `truth` has the pair annotated, else no, each flipped
    with probability `error_rate` (one seeded draw per question, in file order). Returns counts."""
    if not 0.0 <= error_rate <= 1.0:
        raise SpmlError(f"--error-rate {error_rate}: must be between 0 and 1") from None
    questions = Path(questions)
    columns, rows = read_questions(questions)
    dataset = load_coco(truth)
    row_of = {image_id: n for n, image_id in enumerate(dataset.image_ids)}
    column_of = dataset.column_of()
    labels = dataset.labels
    flips = np.random.default_rng(seed).random(len(rows)) < error_rate
    answers = []
    for (line, row), flip in zip(rows, flips):
        where = f"{questions}: line {line}"
        image_id = parse_id(row["image_id"], "image_id", where)
        category_id = parse_id(row["category_id"], "category_id", where)
        if image_id not in row_of:
            raise SpmlError(f"{where}: image {image_id} is not in {truth}") from None
        if category_id not in column_of:
            raise SpmlError(f"{where}: category {category_id} is not in {truth}") from None
        n = row_of[image_id]
        present = column_of[category_id] in labels.indices[labels.indptr[n]:labels.indptr[n + 1]]
        answers.append(bool(present) != bool(flip))
    columns = columns if "answer" in columns else columns + ["answer"]
    with atomic_write(out) as f:
        writer = csv.DictWriter(f, fieldnames=columns or QUESTION_COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for (_, row), present in zip(rows, answers):
            writer.writerow({**row, "answer": "yes" if present else "no"})
    return {"questions": len(rows), "yes": sum(answers), "no": len(answers) - sum(answers), "flipped": int(flips.sum())}
