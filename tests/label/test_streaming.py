"""Memory flat in images x categories: the writer streams from a job's chunk files and writes, byte for byte,
what the in-memory writer wrote; per-category prior thresholds from streamed blocks equal a full sort's."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from spml.data.coco import dataset_from_dict
from spml.data.provenance import relative_to_file
from spml.label import job
from spml.label.labeler import Scores, prior_thresholds, threshold
from spml.label.writers import failures_file, write_coco, write_labels


def reference_write_labels(out, dataset, values, failures, tau, keep_observed, model_sha256, rows, tau_low, soft):
    """The writer as it was: the whole (N, L) array in memory (info written as write_labels does)."""
    from spml.label.writers import created_time

    positives = threshold(values, tau)
    observed = dataset.positives
    if keep_observed:
        positives = positives | observed
    failed = np.zeros(len(dataset), dtype=bool)
    failed[list(failures)] = True
    positives[failed] = False
    cat_ids = dataset.category_ids
    info = {"description": "spml pseudo labels", "tau": float(tau) if np.ndim(tau) == 0 else [float(t) for t in tau],
            "keep_observed": keep_observed, "model": str((dataset.images_dir / "m.onnx").resolve()),
            "model_sha256": model_sha256, "source_annotations": str(dataset.path),
            "images_dir": str(dataset.images_dir.resolve()),
            "images_dir_relative": relative_to_file(dataset.images_dir, out), "date_created": created_time(),
            "failed_images": int(failed[rows.start:rows.stop].sum())}
    if tau_low is not None:
        info["tau_low"] = tau_low
    if soft:
        info["soft"] = True
    images = [dataset.images[n] for n in rows if not failed[n]]
    if tau_low is not None or soft:
        with np.errstate(invalid="ignore"):
            negative = (values <= tau_low) & ~positives if tau_low is not None else None
        images = []
        for n in rows:
            if failed[n]:
                continue
            im = dict(dataset.images[n])
            if negative is not None:
                im["neg_category_ids"] = [cat_ids[j] for j in np.flatnonzero(negative[n])]
                im["not_exhaustive_category_ids"] = [cat_ids[j] for j in np.flatnonzero(~negative[n] & ~positives[n])]
            if soft:
                im["spml_scores"] = [round(float(v), 5) for v in values[n]]
            images.append(im)
    annotations = ({"image_id": dataset.images[n]["id"], "category_id": cat_ids[j],
                    "score": round(float(values[n, j]), 6), "iscrowd": 0,
                    "source": "observed" if observed[n, j] else "pseudo"}
                   for n in rows for j in np.flatnonzero(positives[n]))
    write_coco(out, info, licenses=[], images=images, categories=dataset.categories, annotations=annotations)


@pytest.fixture
def job_scores(tmp_path, monkeypatch):
    """A 103-image x 7-category dataset with random scores kept as a job's chunk files (chunks of 8)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    rng = np.random.default_rng(0)
    n, l = 103, 7
    raw = {"images": [{"id": 10 + i, "file_name": f"{i}.jpg"} for i in range(n)],
           "categories": [{"id": 3 * j + 1, "name": f"c{j}"} for j in range(l)],
           "annotations": [{"id": i + 1, "image_id": 10 + i, "category_id": 3 * int(rng.integers(l)) + 1} for i in range(0, n, 2)]}
    (tmp_path / "m.onnx").write_bytes(b"model")
    (tmp_path / "ann.json").write_text(json.dumps(raw))
    dataset = dataset_from_dict(raw, tmp_path / "ann.json", tmp_path)
    values = rng.random((n, l)).astype(np.float32)
    failures = {5: "cannot decode (truncated)", 40: "missing file", 41: "missing file"}
    values[list(failures)] = np.nan

    def engine(parts, bar):
        for part in parts:
            yield part, Scores(values[part.start:part.stop], {r: m for r, m in failures.items() if r in part}, 0.0, part.start)

    chunked = job.resumable_scores(SimpleNamespace(batch_size=4), dataset, tmp_path / "out.json", range(n), model_sha256="sha",
                                   chunk_images=8, log=lambda m: None, engine=engine)
    assert len(list(job.state_dir(tmp_path / "out.json").glob("chunk_*.npz"))) == 13
    return dataset, values, failures, chunked


@pytest.mark.parametrize("rows, tau_low, soft, per_class", [
    (None, None, False, False), (None, 0.2, True, False), (range(37, 90), 0.3, False, True), (range(0, 0), None, True, False)])
def test_streamed_writer_writes_what_the_in_memory_writer_wrote(job_scores, tmp_path, rows, tau_low, soft, per_class):
    dataset, values, failures, chunked = job_scores
    rows = range(len(dataset)) if rows is None else rows
    tau = np.linspace(0.3, 0.8, dataset.num_classes, dtype=np.float32) if per_class else 0.55
    reference_write_labels(tmp_path / "ref.json", dataset, values, failures, tau, True, "sha", rows, tau_low, soft)
    summary = write_labels(tmp_path / "new.json", dataset, chunked, tau, model_path=tmp_path / "m.onnx",
                           model_sha256="sha", rows=rows, tau_low=tau_low, soft=soft)
    assert (tmp_path / "new.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
    ref = json.loads((tmp_path / "ref.json").read_text())
    assert summary["images"] == len(ref["images"]) and summary["annotations"] == len(ref["annotations"])
    assert summary["failed"] == len([r for r in failures if r in rows]) == (failures_file(tmp_path / "new.json").exists() and
                                                                          len(failures_file(tmp_path / "new.json").read_text().splitlines()))


def sorted_prior_thresholds(scores, priors):
    """The thresholds by a full sort of each column (how spml computed them before)."""
    ok = ~np.isnan(scores).any(axis=1)
    taus = np.empty(scores.shape[1], dtype=np.float32)
    for j in range(scores.shape[1]):
        column = np.sort(scores[ok, j])
        above = int(round(float(np.clip(priors[j], 0, 1)) * len(column)))
        taus[j] = 1.0 if above <= 0 else (np.nextafter(column[-above], -1) if above <= len(column) else 0.0)
    return np.clip(taus, 0.0, 1.0)


def test_streamed_prior_thresholds_equal_a_full_sort(job_scores):
    dataset, values, _, chunked = job_scores
    rng = np.random.default_rng(1)
    priors = np.concatenate([[0.0, 1.0], rng.random(dataset.num_classes - 2)])
    np.testing.assert_array_equal(prior_thresholds(chunked, priors), sorted_prior_thresholds(values, priors))
    for trial in range(20):  # ties, zeros, tiny and negative values, all through the bit patterns
        s = (rng.random((int(rng.integers(1, 200)), 5)) ** int(rng.integers(1, 9)) * rng.choice([1, -1])).astype(np.float32)
        s[:, 0] = np.round(s[:, 0], 1)
        s[rng.random(len(s)) < 0.1] = np.nan
        p = rng.random(5)
        np.testing.assert_array_equal(prior_thresholds(s, p), sorted_prior_thresholds(s, p))
