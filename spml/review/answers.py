"""A person's answers, read from the three forms they come back in: the questions CSV with `answer` filled, and
Label Studio's JSON and JSON_MIN exports. Each answer is (image id, category id, yes or no, where it came from),
in file order, so that a later answer can win."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from spml.data.json_stream import load_json
from spml.errors import SpmlError
from spml.review.select import CHOICE_NAME

YES = {"yes", "y", "1", "true"}
NO = {"no", "n", "0", "false"}


@dataclass(frozen=True)
class Answer:
    image_id: int
    category_id: int
    present: bool
    where: str  # file and line or task, for messages


def parse_answer(value, where: str) -> bool | None:
    """yes/no, 1/0, true/false (any case) -> True/False; empty -> None (skipped); anything else is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = "" if value is None else str(value).strip().lower()
    if not text:
        return None
    if text in YES:
        return True
    if text in NO:
        return False
    raise SpmlError(f"{where}: answer {str(value)[:40]!r} is not yes/no, 1/0 or true/false") from None


def parse_id(value, what: str, where: str) -> int:
    if isinstance(value, bool):
        value = None
    try:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return int(str(value).strip()) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise SpmlError(f"{where}: {what} {str(value)[:40]!r} is not an integer id") from None


def read_answers(path: str | os.PathLike) -> list[Answer]:
    """The answers in one file: CSV by its .csv suffix, else a Label Studio export (JSON or JSON_MIN)."""
    path = Path(path)
    if not path.is_file():
        raise SpmlError(f"{path}: no such file") from None
    if path.suffix.lower() == ".csv":
        return _csv_answers(path)
    tasks = load_json(path, "answers")  # a UTF-8 BOM, as some tools write, is fine: json.load of bytes skips it
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise SpmlError(f"{path}: not a Label Studio export (expected a JSON list of tasks)") from None
    answers: list[Answer] = []
    for k, task in enumerate(tasks):
        where = f"{path}: task {task.get('id', k + 1)}"
        if isinstance(task.get("data"), dict):  # JSON: the task's data, its annotations (not its predictions)
            answers += _json_task_answers(task, where)
        else:  # JSON_MIN: one flat record per annotation, the data's fields at the top
            answer = _choice(task.get(CHOICE_NAME), where) if CHOICE_NAME in task else None
            if answer is not None:
                answers.append(_answer(task, answer, where))
    return answers


def _answer(fields: dict, present: bool, where: str) -> Answer:
    for key in ("image_id", "category_id"):
        if key not in fields:
            raise SpmlError(f"{where}: no {key}; answers must carry the image_id and category_id of their question") from None
    return Answer(parse_id(fields["image_id"], "image_id", where), parse_id(fields["category_id"], "category_id", where),
                  present, where)


def _csv_answers(path: Path) -> list[Answer]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("image_id", "category_id", "answer") if c not in (reader.fieldnames or [])]
            if missing:
                raise SpmlError(f"{path}: no column {', '.join(missing)} (expected the questions.csv of "
                                f"spml-review select, with answer filled)") from None
            answers = []
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                present = parse_answer(row["answer"], where)
                if present is not None:
                    answers.append(_answer(row, present, where))
            return answers
    except UnicodeDecodeError as e:
        raise SpmlError(f"{path}: not a UTF-8 text file ({e})") from None
    except csv.Error as e:
        raise SpmlError(f"{path}: not a CSV file ({e})") from None


def _choice(value, where: str) -> bool | None:
    """A choice as Label Studio writes it: a plain string (JSON_MIN, one choice), a {"choices": [...]} dict
    (JSON_MIN, several), or a list of choices (JSON's result value). None when nothing was chosen."""
    if isinstance(value, dict):
        value = value.get("choices", [])
    if isinstance(value, list):
        picked = {parse_answer(v, where) for v in value} - {None}
        if len(picked) > 1:
            raise SpmlError(f"{where}: both yes and no chosen") from None
        return picked.pop() if picked else None
    return parse_answer(value, where)


def _json_task_answers(task: dict, where: str) -> list[Answer]:
    """One answer per annotation that chose something, in the order Label Studio lists them (creation order);
    cancelled (skipped) annotations are no answer."""
    out = []
    annotations = task.get("annotations") or task.get("completions") or []  # completions: Label Studio before 1.0
    for n, annotation in enumerate(annotations if isinstance(annotations, list) else []):
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        here = f"{where}, annotation {annotation.get('id', n + 1)}"
        for result in annotation.get("result") or []:
            if isinstance(result, dict) and result.get("type") == "choices" and \
                    result.get("from_name", CHOICE_NAME) == CHOICE_NAME:
                present = _choice((result.get("value") or {}).get("choices", []), here)
                if present is not None:
                    out.append(_answer(task["data"], present, here))
    return out
