"""`spml-review merge`: a person's answers into a COCO file, LVIS-style.

Annotations are positives, each image's `neg_category_ids` its verified negatives, everything else unobserved.
A yes becomes an annotation with `source: verified`; a no, the category in the image's `neg_category_ids`. The
observed file's labels are never lost: an answer that contradicts one of its annotations (other than a `pseudo`
one, which an answer corrects) or one of its negatives is counted and left out. Among the answers, a later one
(later file, later line or task) wins, and each change of mind is counted as a conflict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from spml.data.coco import dataset_from_dict, resolve_images_dir
from spml.data.json_stream import load_json
from spml.errors import SpmlError
from spml.files import sha256_of, write_json
from spml.review.answers import Answer, read_answers


@dataclass
class MergeSummary:
    answers: int = 0
    conflicts: int = 0  # pairs answered both ways; the later answer was kept
    contradicting_observed: int = 0  # answers against the observed file's labels; its labels were kept
    positives_added: int = 0
    negatives_added: int = 0
    pseudo_confirmed: int = 0
    pseudo_removed: int = 0


def final_answers(answers: list[Answer]) -> tuple[dict[tuple[int, int], Answer], int]:
    """The last answer of each pair, and how many times an answer changed an earlier one's yes or no."""
    final: dict[tuple[int, int], Answer] = {}
    conflicts = 0
    for a in answers:
        key = (a.image_id, a.category_id)
        if key in final and final[key].present != a.present:
            conflicts += 1
        final[key] = a
    return final, conflicts


def _load_observed(path: Path) -> dict:
    raw = load_json(path)
    dataset_from_dict(raw, path)  # the same checks as every spml reader: ids, references, duplicates
    return raw


def check_known(answers: list[Answer], image_ids: set, category_ids: set, observed: Path) -> None:
    for a in answers:
        if a.image_id not in image_ids:
            raise SpmlError(f"{a.where}: image {a.image_id} is not in {observed}; nothing written") from None
        if a.category_id not in category_ids:
            raise SpmlError(f"{a.where}: category {a.category_id} is not in {observed}; nothing written") from None


def merge_answers(observed: str | os.PathLike, answer_files, out: str | os.PathLike) -> MergeSummary:
    """Read OBSERVED and the answers, check them all, then write OUT atomically (nothing on any error)."""
    observed = Path(observed)
    raw = _load_observed(observed)
    answers = [a for path in answer_files for a in read_answers(path)]
    images = {im["id"]: im for im in raw["images"]}
    check_known(answers, set(images), {c["id"] for c in raw["categories"]}, observed)
    final, conflicts = final_answers(answers)
    summary = MergeSummary(answers=len(answers), conflicts=conflicts)
    annotations = raw["annotations"]
    at_pair: dict[tuple[int, int], list[dict]] = {}
    for ann in annotations:
        at_pair.setdefault((ann["image_id"], ann["category_id"]), []).append(ann)
    removed: set[int] = set()  # id() of pseudo annotations a person said no to
    added: list[dict] = []
    next_id = max((a["id"] for a in annotations if isinstance(a.get("id"), int)), default=0) + 1
    for (image_id, category_id), answer in final.items():
        im = images[image_id]
        present = at_pair.get((image_id, category_id), [])
        observed_positive = any(a.get("source") != "pseudo" for a in present)
        observed_negative = category_id in (im.get("neg_category_ids") or [])
        if (answer.present and observed_negative) or (not answer.present and observed_positive):
            summary.contradicting_observed += 1
            continue
        _resolved(im, category_id)
        if answer.present:
            if observed_positive:
                continue
            if present:  # the teacher's pseudo positive, confirmed
                for a in present:
                    a["source"] = "verified"
                summary.pseudo_confirmed += 1
                continue
            added.append({"id": next_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
                          "area": 0.0, "source": "verified"})
            next_id += 1
            summary.positives_added += 1
        else:
            if present:
                removed.update(id(a) for a in present)
                summary.pseudo_removed += 1
            im["neg_category_ids"] = sorted(set(im.get("neg_category_ids") or []) | {category_id})
            summary.negatives_added += 1
    if added and not any("source" in a for a in annotations):
        for a in annotations:  # with verified ones beside them, say which annotations the file observed
            a["source"] = "observed"
    raw["annotations"] = [a for a in annotations if id(a) not in removed] + added
    if isinstance(raw.get("info"), dict) or "info" not in raw:
        info = raw.setdefault("info", {})
        keep_images_dir(info, resolve_images_dir(observed, raw), Path(out))
        info["spml_reviews"] = [*(info.get("spml_reviews") or []), {  # one record per merge, rounds accumulate
            "observed": str(observed.resolve()), "observed_sha256": sha256_of(observed),
            "answers": [{"file": str(Path(p).resolve()), "sha256": sha256_of(p)} for p in answer_files],
            **summary.__dict__,
        }]
    write_json(out, raw)
    return summary


def keep_images_dir(info: dict, images_dir: Path, out: Path) -> None:
    """OUT's images are OBSERVED's, wherever OUT is written: the folder recorded absolute and relative to OUT
    (a relative record copied as it was would point next to OUT)."""
    from spml.data.provenance import relative_to_file

    info["images_dir"] = str(images_dir.resolve())
    relative = relative_to_file(images_dir, out)
    if relative is None:
        info.pop("images_dir_relative", None)
    else:
        info["images_dir_relative"] = relative


def _resolved(im: dict, category_id: int) -> None:
    """A pair a person answered is no longer unknown."""
    unknown = im.get("not_exhaustive_category_ids")
    if isinstance(unknown, list) and category_id in unknown:
        im["not_exhaustive_category_ids"] = [c for c in unknown if c != category_id]
