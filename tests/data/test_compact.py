"""The compact input side: the streamed COCO parser, the image table and the sparse labels agree with a plain
json.load of the same file and with dense matrices built by hand, on files with odd fields and layouts."""

import io
import json

import numpy as np
import pytest

from spml.data.coco import load_coco
from spml.data.compact import ImageTable, SparseLabels
from spml.data.json_stream import STREAMED, stream_object
from spml.errors import SpmlError

@pytest.mark.parametrize("indent", [None, 2])
def test_loaded_coco_equals_a_plain_json_load(tmp_path, indent, odd_coco, dense_reference):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(odd_coco, indent=indent))
    raw = json.loads(path.read_text())
    ds = load_coco(path)
    assert list(ds.images) == raw["images"] and ds.images == raw["images"]
    # records come back with their keys in file order: a writer copying them writes the same text
    assert [json.dumps(im) for im in ds.images] == [json.dumps(im) for im in raw["images"]]
    assert ds.file_names == [im["file_name"] for im in raw["images"]]
    assert ds.image_ids == [im["id"] for im in raw["images"]]
    assert ds.images[-1] == raw["images"][-1] and ds.images[1:3] == raw["images"][1:3]
    assert ds.categories == raw["categories"]
    assert ds.meta == {k: raw[k] for k in ("info", "licenses", "odd_top_level")}
    positives, scores, observed = dense_reference(raw)
    np.testing.assert_array_equal(ds.positives, positives)
    np.testing.assert_array_equal(ds.scores, scores)
    np.testing.assert_array_equal(ds.observed, observed)
    assert ds.raw == raw  # read again on first use, for code that copies annotations as they are
    sub = ds.subset([4, 0, 3])
    assert list(sub.images) == [raw["images"][k] for k in (4, 0, 3)]
    np.testing.assert_array_equal(sub.positives, positives[[4, 0, 3]])


def test_a_file_without_scores_or_sources_has_none():
    from spml.data.coco import dataset_from_dict

    raw = {"images": [{"id": 1, "file_name": "a"}], "categories": [{"id": 5}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 5}]}
    ds = dataset_from_dict(raw)
    assert ds.scores is None and ds.observed is None and ds.positives.tolist() == [[True]]


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_stream_parser_cuts_anywhere_and_gives_json_load_values(chunk, odd_coco):
    raw = odd_coco
    raw["number_last"] = 123456789  # a number cut by a chunk's end must be read whole
    raw["images"][3]["file_name"] = "no lone surrogate: it has no UTF-8 (the escaped one is load_coco's test)"
    text = json.dumps(raw, ensure_ascii=False, indent=1).encode("utf-8")  # multi-byte characters cut by chunks
    got = {"images": [], "annotations": []}
    top = stream_object(io.BytesIO(b"\xef\xbb\xbf" + text), {k: got[k].append for k in got}, chunk=chunk)
    assert top["images"] is STREAMED and top["annotations"] is STREAMED
    assert got["images"] == raw["images"] and got["annotations"] == raw["annotations"]
    assert {k: v for k, v in top.items() if k not in got} == {k: v for k, v in raw.items() if k not in got}
    assert stream_object(io.BytesIO(b' [1, {"a": 2}] '), {}) == [1, {"a": 2}]
    assert stream_object(io.BytesIO(b'{"images": {"not": "a list"}}'), {"images": None}) == {"images": {"not": "a list"}}


@pytest.mark.parametrize("text", ['{"images": [{"id": 1}', '{"images": [1 2]}', '{"a": 1} x', '{"a" 1}', '{1: 2}',
                                  '', '{"images": [{"id": 1,}]}'])
def test_stream_parser_rejects_what_json_load_rejects(text):
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(ValueError):
        stream_object(io.BytesIO(text.encode()), {"images": lambda item: None}, chunk=4)


def test_bad_files_are_one_line_errors(tmp_path):
    for text, message in [('{"images": [{"id": 1, "file_name": "a"}], "categories": [{"id": 1}', "not a JSON file"),
                          (b"\xff\xfe{}", "not a JSON file"),
                          ('{"images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}], "categories": [{"id": 1}]}',
                           "duplicate image id 1"),
                          ('{"annotations": [{"id": 4, "image_id": 2, "category_id": 1}], "images": [{"id": 1, "file_name": "a"}], '
                           '"categories": [{"id": 1}]}', "annotation 4 refers to image 2"),
                          ('{"images": [{"id": 1, "file_name": "a"}], "categories": [{"id": 1}], '
                           '"annotations": [{"id": 4, "image_id": 1, "category_id": 1}, {"id": 4, "image_id": 1, "category_id": 1}]}',
                           "duplicate annotation id 4"),
                          ('{"images": [{"id": "1", "file_name": "a"}], "categories": [{"id": 1}]}', "integer 'id'")]:
        path = tmp_path / "bad.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(SpmlError, match=message):
            load_coco(path)


def test_sparse_labels_agree_with_dense_matrices():
    rng = np.random.default_rng(0)
    shape = (50, 9)
    rows, cols = rng.integers(0, shape[0], 120), rng.integers(0, shape[1], 120)  # duplicates included
    scores, observed = rng.random(120).astype(np.float32), rng.random(120) < 0.3
    labels = SparseLabels.from_pairs(rows, cols, shape, scores, observed=observed)
    dense, dense_scores, dense_observed = np.zeros(shape, bool), np.zeros(shape, np.float32), np.zeros(shape, bool)
    for r, c, s, o in zip(rows, cols, scores, observed):
        dense[r, c] = True
        dense_scores[r, c] = max(dense_scores[r, c], s)
        dense_observed[r, c] |= o
    np.testing.assert_array_equal(labels.toarray(), dense)
    np.testing.assert_array_equal(labels[10:20], dense[10:20])
    pick = np.array([3, 3, 49, 0, -1])
    np.testing.assert_array_equal(labels[pick], dense[pick])
    np.testing.assert_array_equal(labels[7], dense[7])
    np.testing.assert_array_equal(labels.scores_of(slice(None)), dense_scores)
    np.testing.assert_array_equal(labels.observed_of(pick), dense_observed[pick])
    np.testing.assert_array_equal(labels.column_counts(), dense.sum(axis=0))
    np.testing.assert_array_equal(labels.take(pick).toarray(), dense[pick])
    np.testing.assert_array_equal(SparseLabels.from_dense(dense).toarray(), dense)
    assert labels.nnz == dense.sum()
    empty = SparseLabels.from_pairs([], [], (4, 3))
    assert not empty.toarray().any() and empty[1:3].shape == (2, 3)


def test_image_table_take_and_unicode(odd_coco):
    records = odd_coco["images"]
    table = ImageTable.from_records(records)
    assert [table.file_name(n) for n in range(len(table))] == [im["file_name"] for im in records]
    assert list(table.take([2, 2, 0])) == [records[2], records[2], records[0]]
    assert table.nbytes() < 1000  # columns, not dicts
    with pytest.raises(IndexError):
        table[len(table)]


def test_stream_parser_does_not_skip_an_item_before_a_missing_comma():
    for chunk in (4, 1 << 20):
        with pytest.raises(ValueError):
            stream_object(io.BytesIO(b'{"images": [{"id": 1} {"id": 2}]}'), {"images": lambda item: None}, chunk=chunk)


def test_a_loaded_dataset_pickles_for_data_loader_workers(tmp_path, odd_coco):
    import pickle

    path = tmp_path / "odd.json"
    path.write_text(json.dumps(odd_coco))
    ds = pickle.loads(pickle.dumps(load_coco(path)))
    assert list(ds.images) == odd_coco["images"] and ds.raw["annotations"] == odd_coco["annotations"]


def test_stream_parser_accepts_exactly_what_json_loads_accepts():
    """Differential fuzz: corrupted COCO texts, cut into random chunk sizes; same values, or both refuse."""
    import random

    rng = random.Random(0)
    source = json.dumps({"info": {"a": [1, 2.5]}, "images": [{"id": i, "file_name": f"é{i}.jpg"} for i in range(4)],
                         "annotations": [{"id": 1, "image_id": 0, "category_id": 3}], "categories": [{"id": 3}]})
    for k in range(400):
        chars = list(source)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = rng.choice('{}[]":,0a1 .e-')
        text = "".join(chars)[: rng.randint(1, len(chars))] if k % 4 == 0 else "".join(chars)
        try:
            expected = json.loads(text)
        except ValueError:
            expected = ValueError
        items = {"images": [], "annotations": []}
        try:
            got = stream_object(io.BytesIO(text.encode()), {key: items[key].append for key in items},
                                chunk=rng.choice([1, 2, 5, 16, 1 << 20]))
            if isinstance(got, dict):
                got = {key: items[key] if v is STREAMED else v for key, v in got.items()}
        except ValueError:
            got = ValueError
        assert got == expected, text
