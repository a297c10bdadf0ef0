"""A small world for spml-review: full labels, single positives with a few verified negatives, and the labels file
spml-label --soft would write for them (written by the labeler's own writer, from hand-made teacher scores)."""

from __future__ import annotations

import json

import numpy as np
import pytest

CATEGORY_IDS = [1, 3, 7, 8, 12]  # gappy, as COCO's are
TAU = 0.7


@pytest.fixture
def world(tmp_path):
    from spml.data.coco import load_coco
    from spml.label.labeler import Scores
    from spml.label.writers import write_labels

    rng = np.random.default_rng(5)
    n, L = 24, len(CATEGORY_IDS)
    truth = rng.random((n, L)) < 0.35
    truth[np.arange(n), rng.integers(0, L, n)] = True  # every image has a positive
    images = [{"id": 100 + k, "file_name": f"img{k:02d}.png", "width": 8, "height": 8} for k in range(n)]
    categories = [{"id": c, "name": f"cat{c}"} for c in CATEGORY_IDS]

    def coco(pairs, negatives=None):
        ims = [dict(im) for im in images]
        for k, cols in (negatives or {}).items():
            ims[k]["neg_category_ids"] = [CATEGORY_IDS[j] for j in cols]
        anns = [{"id": a + 1, "image_id": 100 + k, "category_id": CATEGORY_IDS[j], "iscrowd": 0, "area": 1.0,
                 "bbox": [0, 0, 1, 1]} for a, (k, j) in enumerate(pairs)]
        return {"info": {"description": "test"}, "images": ims, "categories": categories, "annotations": anns}

    full = tmp_path / "truth.json"
    full.write_text(json.dumps(coco([(k, j) for k in range(n) for j in np.flatnonzero(truth[k])])))
    single = [(k, int(rng.choice(np.flatnonzero(truth[k])))) for k in range(n)]
    # a person already checked a few absent categories of images 0-3
    negatives = {k: [j for j in range(L) if not truth[k, j]][:2] for k in range(4)}
    observed = tmp_path / "sp.json"
    observed.write_text(json.dumps(coco(single, negatives)))
    # distinct teacher scores (so rankings have no ties), unobserved ones piled near 0.5 as an EM teacher's are
    scores = np.where(truth, 0.55 + 0.4 * rng.random((n, L)), 0.35 + 0.3 * rng.random((n, L))).astype(np.float32)
    scores = np.round(scores, 4) + np.arange(n * L).reshape(n, L) * 1e-6
    dataset = load_coco(observed)
    labels = tmp_path / "labels.json"
    write_labels(labels, dataset, Scores(scores.astype(np.float32)), TAU, keep_observed=True,
                 model_path=tmp_path / "teacher.onnx", model_sha256="0" * 64, soft=True)
    raw = json.loads(labels.read_text())
    p = np.array([im["spml_scores"] for im in raw["images"]])  # what the file holds (rounded by the writer)
    known = np.zeros((n, L), bool)
    for k, j in single:
        known[k, j] = True
    for k, cols in negatives.items():
        known[k, cols] = True
    return {"truth": full, "observed": observed, "labels": labels, "truth_matrix": truth, "known": known, "p": p,
            "image_ids": [im["id"] for im in images], "n": n, "L": L, "tmp": tmp_path}


@pytest.fixture
def cli():
    """cli(*args): spml-review run in-process; the click Result."""
    from click.testing import CliRunner

    from spml.review.cli import main

    return lambda *args: CliRunner().invoke(main, [str(a) for a in args])
