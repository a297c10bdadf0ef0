"""`spml-review select`: the questions worth a person's answer, chosen from an `spml-label --soft` labels file.

The file is read twice, streamed (spml.data.json_stream), never whole: first its annotations, for the pairs already
known (observed and verified positives; `pseudo` ones are the teacher's and may be asked), then its images, each
with the teacher's probabilities (`spml_scores`, in category order) and its known negatives (`neg_category_ids`).
Only the best candidates within the budget are kept, in a heap, so memory grows with the budget and the number of
known pairs, not with images x categories. With a model (`select_with_model`), the labels file is the one the
labeler's library call writes for the observed labels' images, so both paths choose alike.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from spml.data.coco import resolve_images_dir
from spml.data.json_stream import DECODE_ERRORS, decode_error, stream_object
from spml.errors import SpmlError
from spml.files import atomic_write, sha256_of, write_json
from spml.review.strategies import STRATEGIES, Strategy

UNITS = ("pair", "image")
QUESTION_COLUMNS = ["image_id", "file_name", "category_id", "category", "score", "answer"]
# Label Studio serves files below LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT at this address
LOCAL_FILES_URL = "/data/local-files/?d="
CHOICE_NAME, IMAGE_NAME = "answer", "image"


@dataclass
class Question:
    image_id: int
    file_name: str
    column: int  # the category's position in the labels file's `categories`
    score: float  # the teacher's probability that the answer is yes
    weight: float | None = None  # `weighted`: the weight it was sampled with


def _read(path: Path, streamed: dict):
    try:
        with open(path, "rb") as f:
            return stream_object(f, streamed)
    except FileNotFoundError:
        raise SpmlError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpmlError(f"{path}: is a folder, not a labels file") from None
    except OSError as e:
        raise SpmlError(f"{path}: cannot read ({e.strerror})") from None
    except DECODE_ERRORS as e:  # RecursionError and MemoryError too: a user's file is never a traceback
        raise SpmlError(f"{path}: not a JSON file ({decode_error(e)})") from None


def _is_id(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class KnownPairs:
    """(image id, category id) pairs a person already answered, in two sorted int64 columns (16 bytes a pair)."""

    def __init__(self):
        self._images, self._categories = array("q"), array("q")  # 8 bytes an id while reading, not a Python int's 36

    def add(self, image_id, category_id) -> None:
        if _is_id(image_id) and _is_id(category_id) and -2 ** 63 <= min(image_id, category_id) and \
                max(image_id, category_id) < 2 ** 63:
            self._images.append(image_id)
            self._categories.append(category_id)

    def freeze(self) -> "KnownPairs":
        images = np.frombuffer(self._images, dtype=np.int64) if len(self._images) else np.zeros(0, np.int64)
        categories = np.frombuffer(self._categories, dtype=np.int64) if len(self._categories) else np.zeros(0, np.int64)
        order = np.argsort(images, kind="stable")
        self.images, self.categories = images[order], categories[order]
        del self._images, self._categories
        return self

    def __len__(self) -> int:
        return len(self.images)

    def of(self, image_id: int) -> np.ndarray:
        a, b = np.searchsorted(self.images, image_id, "left"), np.searchsorted(self.images, image_id, "right")
        return self.categories[a:b]


def read_known_pairs(path: Path, known: KnownPairs, negatives_too: bool = False) -> dict:
    """Add the file's non-pseudo annotations to `known` (and, with `negatives_too`, its images' neg_category_ids:
    for a file whose images are not streamed again); returns the file's other top-level fields."""

    def annotation(a):
        if isinstance(a, dict) and a.get("source") != "pseudo":
            known.add(a.get("image_id"), a.get("category_id"))

    def image(im):
        if negatives_too and isinstance(im, dict) and isinstance(im.get("neg_category_ids"), list):
            for c in im["neg_category_ids"]:
                known.add(im.get("id"), c)

    top = _read(path, {"annotations": annotation, "images": image})
    if not isinstance(top, dict) or not isinstance(top.get("categories"), list):
        raise SpmlError(f"{path}: not a COCO labels file (expected a JSON object with 'images' and 'categories')") from None
    return top


def labeling_thresholds(path: Path, info: dict, num_classes: int) -> np.ndarray:
    """The tau the labeler applied, per category (info.tau: one number, or one per category)."""
    tau = info.get("tau")
    if isinstance(tau, (int, float)) and not isinstance(tau, bool):
        return np.full(num_classes, float(tau))
    if isinstance(tau, list) and len(tau) == num_classes and all(isinstance(t, (int, float)) for t in tau):
        return np.asarray(tau, dtype=np.float64)
    raise SpmlError(f"{path}: no labeling threshold (info.tau) for its {num_classes} categories; "
                    f"select reads the file spml-label --soft wrote") from None


class PairHeap:
    """The `budget` best pairs seen so far (a min-heap on (key, tie-break draw))."""

    def __init__(self, budget: int):
        self.budget, self.heap, self.seq = budget, [], 0

    def offer(self, keys: np.ndarray, ties: np.ndarray, questions) -> None:
        """`questions(k)` builds the k-th candidate's Question, only for those that enter the heap."""
        candidates = range(len(keys))
        if len(self.heap) >= self.budget:  # most candidates lose to the weakest kept one: test them in numpy
            candidates = np.flatnonzero(keys >= self.heap[0][0]).tolist()
        for k in candidates:
            item = (float(keys[k]), float(ties[k]), self.seq, questions(k))
            self.seq += 1
            if len(self.heap) < self.budget:
                heapq.heappush(self.heap, item)
            elif item[:2] > self.heap[0][:2]:
                heapq.heapreplace(self.heap, item)

    def chosen(self) -> list[Question]:
        return [item[3] for item in sorted(self.heap, key=lambda t: t[:3], reverse=True)]


class ImageHeap:
    """The best images seen so far whose questions may still fit the budget: images are taken in priority order
    until the next one's questions would exceed it, so an image with at least `budget` answers' worth of better
    images before it can never be taken and is dropped."""

    def __init__(self, budget: int):
        self.budget, self.heap, self.seq, self.total = budget, [], 0, 0
        self.smallest = None  # the fewest questions any candidate image has

    def offer(self, key: float, tie: float, cost: int, questions) -> None:
        """`questions()` builds the image's Questions (`cost` of them), only when the image enters the heap."""
        self.smallest = cost if self.smallest is None else min(self.smallest, cost)
        if self.heap and (key, tie) < self.heap[0][:2] and self.total >= self.budget:
            return  # below every kept image while those already fill the budget: it would be dropped at once
        heapq.heappush(self.heap, (key, tie, self.seq, questions()))
        self.seq += 1
        self.total += cost
        while self.total - len(self.heap[0][3]) >= self.budget:
            self.total -= len(heapq.heappop(self.heap)[3])

    def chosen(self) -> list[Question]:
        out: list[Question] = []
        for *_, questions in sorted(self.heap, key=lambda t: t[:3], reverse=True):
            if len(out) + len(questions) > self.budget:
                break
            out += questions
        if not out and self.heap:
            raise SpmlError(f"--budget {self.budget} is smaller than the questions of any image (at least "
                            f"{self.smallest} with --unit image); raise it or use --unit pair") from None
        return out


@dataclass
class Selection:
    questions: list[Question]
    categories: list[dict]
    tau: np.ndarray
    images_dir: Path
    stats: dict = field(default_factory=dict)


def select_questions(labels: str | os.PathLike, *, budget: int, strategy: str = "uncertainty", unit: str = "pair",
                     seed: int = 0, images: str | os.PathLike | None = None) -> Selection:
    """Choose at most `budget` answers' worth of questions from the labels file (see the module's docstring);
    `images`: the images folder, where not the one the file records."""
    if strategy not in STRATEGIES:
        raise SpmlError(f"unknown --strategy {strategy!r}; valid: {', '.join(STRATEGIES)}") from None
    if unit not in UNITS:
        raise SpmlError(f"unknown --unit {unit!r}; valid: {', '.join(UNITS)}") from None
    if budget < 1:
        raise SpmlError(f"--budget {budget}: ask at least one question") from None
    path = Path(labels)
    known = KnownPairs()
    top = read_known_pairs(path, known)
    info = top.get("info") if isinstance(top.get("info"), dict) else {}
    source = info.get("source_annotations")
    if info.get("keep_observed") is False and isinstance(source, str) and Path(source).is_file():
        read_known_pairs(Path(source), known, negatives_too=True)  # the labels file left its observed labels out
    known.freeze()
    categories = top["categories"]
    column_of = {c["id"]: j for j, c in enumerate(categories) if isinstance(c, dict) and _is_id(c.get("id"))}
    if len(column_of) != len(categories) or not categories:
        raise SpmlError(f"{path}: categories need distinct integer ids") from None
    tau = labeling_thresholds(path, info, len(categories))
    chooser = STRATEGIES[strategy]
    heap = PairHeap(budget) if unit == "pair" else ImageHeap(budget)
    rng = np.random.default_rng(seed)
    stats = {"images": 0, "unknown_pairs": 0, "known_pairs": 0, "not_finite": 0}

    def image(im):
        if not isinstance(im, dict) or not _is_id(im.get("id")) or not isinstance(im.get("file_name"), str):
            raise SpmlError(f"{path}: image record without an integer 'id' and a 'file_name': {str(im)[:80]}") from None
        p = _scores_of(path, im, len(categories))
        negatives = im.get("neg_category_ids")
        known_ids = known.of(im["id"]).tolist() + (negatives if isinstance(negatives, list) else [])
        known_here = np.zeros(len(categories), dtype=bool)
        known_here[[column_of[c] for c in known_ids if _is_id(c) and c in column_of]] = True
        finite = np.isfinite(p)
        ask = ~known_here & finite
        stats["images"] += 1
        stats["known_pairs"] += int(known_here.sum())
        stats["not_finite"] += int((~known_here & ~finite).sum())
        columns = np.flatnonzero(ask)
        if not len(columns):
            return
        stats["unknown_pairs"] += len(columns)
        _offer(heap, chooser, rng, im, columns=columns, p=p[columns], tau=tau[columns])

    _read(path, {"images": image, "annotations": lambda a: None})  # annotations were read in the first pass
    questions = heap.chosen()
    if not questions:
        raise SpmlError(f"{path}: nothing to ask: every (image, category) pair of its {stats['images']} images is "
                        f"already known") from None
    stats["questions"] = len(questions)
    stats["images_asked"] = len({q.image_id for q in questions})
    return Selection(questions, categories, tau, resolve_images_dir(path, top, images).resolve(), stats)


def select_with_model(observed: str | os.PathLike, model: str | os.PathLike, *, tau: float, budget: int,
                      strategy: str = "uncertainty", unit: str = "pair", seed: int = 0,
                      images: str | os.PathLike | None = None, scratch: str | os.PathLike,
                      log=lambda message: None) -> Selection:
    """`select_questions` on the labels that `spml-label MODEL --ann OBSERVED --tau TAU --soft` writes: the images
    of `observed` (the observed labels: single positives, verified answers) scored by `model` through spml.label's
    own library call, into a labels file under `scratch` that the caller removes. What a person said is kept by
    the labeler (observed positives, verified negatives) and so never asked."""
    from spml.label.api import LabelConfig, label

    refuse_pseudo_labels(Path(observed))
    labels = Path(scratch) / "labels.json"
    label(LabelConfig(out=str(labels), taus=(tau,), model=str(model), ann=str(observed),
                      images=None if images is None else str(images), soft=True, keep_observed=True, progress=False),
          log=log)
    return select_questions(labels, budget=budget, strategy=strategy, unit=unit, seed=seed)


def refuse_pseudo_labels(path: Path) -> None:
    """With --model, the file is what a person said; a labels file's `pseudo` annotations would count as observed."""

    def annotation(a):
        if isinstance(a, dict) and a.get("source") == "pseudo":
            raise SpmlError(f"{path}: has the teacher's pseudo labels; with --model, give the observed labels (the "
                            f"single positives, or spml-review merge's file), or drop --model to read its scores") \
                from None

    _read(path, {"annotations": annotation, "images": lambda im: None})


def _scores_of(path: Path, im: dict, num_classes: int) -> np.ndarray:
    values = im.get("spml_scores")
    if not isinstance(values, list):
        raise SpmlError(f"{path}: image {im['id']} has no spml_scores (the teacher's probabilities); label with "
                        f"spml-label --soft") from None
    if len(values) != num_classes:
        raise SpmlError(f"{path}: image {im['id']} has {len(values)} spml_scores for {num_classes} categories") from None
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    try:  # a null where the writer had NaN
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise SpmlError(f"{path}: image {im['id']}: spml_scores are not numbers") from None


def _offer(heap, chooser: Strategy, rng: np.random.Generator, im: dict, *, columns: np.ndarray, p: np.ndarray,
           tau: np.ndarray) -> None:
    weights = chooser.weights(p, tau) if chooser.weights is not None else None

    def question(k: int) -> Question:
        return Question(im["id"], im["file_name"], int(columns[k]), float(p[k]),
                        None if weights is None else float(weights[k]))

    if isinstance(heap, PairHeap):
        u, ties = rng.random(len(columns)), rng.random(len(columns))
        heap.offer(chooser.pairs(p, tau, u), ties, question)
    else:
        u, tie = rng.random(), rng.random()
        heap.offer(chooser.image(p, tau, u), tie, len(columns), lambda: [question(k) for k in range(len(columns))])


def image_url(selection: Selection, file_name: str, prefix: str | None) -> str:
    """The address Label Studio shows the image from: `prefix` + file name, or by default its local-files serving
    of the image's path, relative to $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT where that is set and holds the image,
    else absolute (Label Studio then started with that variable set to /)."""
    if prefix is not None:
        return prefix + quote(file_name)
    where = (selection.images_dir / file_name).resolve()
    root = os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    if root and where.is_relative_to(Path(root).resolve()):
        return LOCAL_FILES_URL + quote(where.relative_to(Path(root).resolve()).as_posix())
    return LOCAL_FILES_URL + quote(where.as_posix().lstrip("/"))


def write_selection(out: str | os.PathLike, selection: Selection, *, labels: str | os.PathLike, strategy: str,
                    unit: str, budget: int, seed: int, url_prefix: str | None = None,
                    model: str | os.PathLike | None = None) -> dict[str, Path]:
    """questions.csv, label-studio.json, label-studio.xml and selection.json in `out` (each written atomically).
    `labels`: the file select was given; `model`: the teacher that scored its images, where select did that."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SpmlError(f"--out {out}: exists and is not a folder") from None
    paths = {name: out / name for name in ("questions.csv", "label-studio.json", "label-studio.xml", "selection.json")}
    cats = selection.categories
    with atomic_write(paths["questions.csv"]) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(QUESTION_COLUMNS)
        for q in selection.questions:
            writer.writerow([q.image_id, q.file_name, cats[q.column]["id"], _name(cats[q.column]), _rounded(q.score), ""])
    tasks = [_task(selection, q, url_prefix) for q in selection.questions]
    with atomic_write(paths["label-studio.json"]) as f:
        json.dump(tasks, f, indent=1)
    with atomic_write(paths["label-studio.xml"]) as f:
        f.write(LABEL_CONFIG)
    chosen = [{"image_id": q.image_id, "category_id": cats[q.column]["id"], "score": _rounded(q.score),
               **({"weight": round(q.weight, 6)} if q.weight is not None else {})} for q in selection.questions]
    write_json(paths["selection.json"], {
        "strategy": strategy, "unit": unit, "budget": budget, "seed": seed,
        "labels": str(Path(labels).resolve()), "labels_sha256": sha256_of(labels),
        **({"model": str(Path(model).resolve()), "model_sha256": sha256_of(model)} if model is not None else {}),
        "tau": [float(t) for t in selection.tau], **selection.stats, "questions_chosen": chosen,
    })
    return paths


def _name(category: dict) -> str:
    return str(category.get("name", category["id"]))


def _rounded(score: float) -> float:
    return round(float(score), 6)


def _task(selection: Selection, q: Question, url_prefix: str | None) -> dict:
    """A Label Studio task: the image and the category in `data`, the teacher's pseudo label as a prediction."""
    category = selection.categories[q.column]
    tau = float(selection.tau[q.column])
    return {
        "data": {"image": image_url(selection, q.file_name, url_prefix), "image_id": q.image_id,
                 "file_name": q.file_name, "category_id": category["id"], "category": _name(category),
                 "score": _rounded(q.score)},
        "predictions": [{
            "model_version": "spml teacher",
            "score": _rounded(q.score),
            "result": [{"from_name": CHOICE_NAME, "to_name": IMAGE_NAME, "type": "choices",
                        "value": {"choices": ["yes" if q.score > tau else "no"]}}],
        }],
    }


# The labeling config: the image, the category named above it, one yes/no choice (hotkeys y and n)
LABEL_CONFIG = f"""<View>
  <Header value="Is there one of these in the image?" size="5"/>
  <Header value="$category"/>
  <Image name="{IMAGE_NAME}" value="$image"/>
  <Choices name="{CHOICE_NAME}" toName="{IMAGE_NAME}" choice="single-radio" showInline="true" required="true">
    <Choice value="yes" hotkey="y"/>
    <Choice value="no" hotkey="n"/>
  </Choices>
</View>
"""
