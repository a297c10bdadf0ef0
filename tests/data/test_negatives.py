"""Three-state observed labels: annotations are observed positives (source observed, verified or none; "pseudo" is
the labeler's), each image's neg_category_ids observed negatives, everything else unobserved."""

import json

import numpy as np
import pytest

from spml.data.coco import load_coco
from spml.errors import SpmlError

CATS = [{"id": 3, "name": "a"}, {"id": 10, "name": "b"}, {"id": 7, "name": "c"}]  # gappy ids: column = file order


def write(tmp_path, images, annotations, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "categories": CATS, "annotations": annotations}))
    return path


def image(n, **extra):
    return {"id": 100 + n, "file_name": f"{n}.jpg", **extra}


def test_negatives_positives_and_sources(tmp_path):
    images = [image(0, neg_category_ids=[10, 7]), image(1), image(2, neg_category_ids=[]),
              image(3, neg_category_ids=[3, 7])]  # image 3: category 3 is also annotated, the positive wins
    annotations = [{"id": 1, "image_id": 100, "category_id": 3, "source": "observed"},
                   {"id": 2, "image_id": 101, "category_id": 10, "source": "verified"},
                   {"id": 3, "image_id": 101, "category_id": 7, "source": "pseudo"},
                   {"id": 4, "image_id": 103, "category_id": 3},
                   {"id": 5, "image_id": 102, "category_id": 7, "source": "verified"}]
    ds = load_coco(write(tmp_path, images, annotations))
    F, T = False, True
    np.testing.assert_array_equal(ds.positives, [[T, F, F], [F, T, T], [F, F, T], [T, F, F]])
    np.testing.assert_array_equal(ds.negatives, [[F, T, T], [F, F, F], [F, F, F], [F, F, T]])
    # no source is a person's label as in any COCO file; "pseudo" is the labeler's
    np.testing.assert_array_equal(ds.observed, [[T, F, F], [F, T, F], [F, F, T], [T, F, F]])
    np.testing.assert_array_equal(ds.verified, [[F, F, F], [F, T, F], [F, F, T], [F, F, F]])
    np.testing.assert_array_equal(ds.negatives_of(np.array([3, 0])), ds.negatives[[3, 0]])
    sub = ds.subset([3, 1])
    np.testing.assert_array_equal(sub.negatives, ds.negatives[[3, 1]])
    np.testing.assert_array_equal(sub.verified, ds.verified[[3, 1]])
    assert sub.negative_labels.nnz == 2  # sparse, like the positives
    assert ds.images[0]["neg_category_ids"] == [10, 7]  # the record itself is kept as it was


def test_no_negatives_field_is_none(tmp_path):
    ds = load_coco(write(tmp_path, [image(0)], [{"id": 1, "image_id": 100, "category_id": 3}]))
    assert ds.negatives is None and ds.negative_labels is None and ds.verified is None
    assert ds.observed is None  # no annotation gives a source: every one is observed, as before


def test_null_is_no_negatives(tmp_path):
    ds = load_coco(write(tmp_path, [image(0, neg_category_ids=None)], []))
    assert not ds.negatives.any()


@pytest.mark.parametrize("value, message", [
    ("10", "image 100: neg_category_ids is not a list of category ids"),
    ([10, "7"], "image 100: neg_category_ids is not a list of category ids"),
    ([10, True], "image 100: neg_category_ids is not a list of category ids"),
    ([10, 99], "image 100: neg_category_ids names category 99, which is not in 'categories'"),
])
def test_bad_negatives_are_one_line_errors(tmp_path, value, message):
    with pytest.raises(SpmlError, match=message) as e:
        load_coco(write(tmp_path, [image(0, neg_category_ids=value), image(1)], []))
    assert "\n" not in str(e.value)


def test_ignore_band_labels_file_keeps_its_training_behaviour(tmp_path):
    # what spml-label --tau-low writes: positives, confident negatives, and the unknowns between
    images = [image(0, neg_category_ids=[10], not_exhaustive_category_ids=[7]),
              image(1, neg_category_ids=[3, 10, 7], not_exhaustive_category_ids=[])]
    annotations = [{"id": 1, "image_id": 100, "category_id": 3, "source": "observed", "score": 0.9}]
    ds = load_coco(write(tmp_path, images, annotations))
    unknown = ds.unknown_mask()
    np.testing.assert_array_equal(unknown, [[False, False, True], [False, False, False]])
    # the negatives are known entries whose target is 0: the student's bce trains them as negatives already
    targets = ds.positives.astype(np.float32)
    assert (targets[ds.negatives] == 0).all() and not (ds.negatives & unknown).any()
    np.testing.assert_array_equal(ds.negatives | ds.positives | unknown, np.ones((2, 3), bool))


def test_a_persons_no_wins_over_unknown(tmp_path):
    ds = load_coco(write(tmp_path, [image(0, neg_category_ids=[7], not_exhaustive_category_ids=[7, 10])], []))
    np.testing.assert_array_equal(ds.unknown_mask(), [[False, True, False]])


def test_a_repeated_images_key_means_its_last_value_negatives_included(tmp_path):
    path = tmp_path / "twice.json"
    first = json.dumps([image(0, neg_category_ids=[10]), image(1)])
    second = json.dumps([image(0), image(1, neg_category_ids=[7])])
    path.write_text(f'{{"images": {first}, "categories": {json.dumps(CATS)}, "images": {second}}}')
    ds = load_coco(path)
    assert ds.negatives.tolist() == [[False, False, False], [False, False, True]]  # as json.load reads it


def test_soft_targets_put_a_persons_no_at_zero_and_yes_at_one(tmp_path):
    """A reviewed soft labels file: the teacher's probabilities, except where a person answered."""
    scores = [[0.6, 0.7, 0.8], [0.2, 0.9, 0.4]]
    images = [image(0, neg_category_ids=[10], spml_scores=scores[0]), image(1, spml_scores=scores[1])]
    annotations = [{"id": 1, "image_id": 100, "category_id": 3, "source": "observed"},
                   {"id": 2, "image_id": 101, "category_id": 7, "source": "verified"},
                   {"id": 3, "image_id": 101, "category_id": 10, "source": "pseudo"}]
    soft = load_coco(write(tmp_path, images, annotations)).soft_targets()
    np.testing.assert_allclose(soft, [[1.0, 0.0, 0.8], [0.2, 0.9, 1.0]])


def test_soft_targets_of_an_ignore_band_file_keep_the_teachers_probabilities(tmp_path):
    """In a --tau-low file neg_category_ids are the teacher's confident negatives too: their targets stay as before."""
    images = [image(0, neg_category_ids=[10], spml_scores=[0.6, 0.1, 0.8])]
    path = tmp_path / "band.json"
    path.write_text(json.dumps({"info": {"tau": 0.7, "tau_low": 0.3}, "images": images, "categories": CATS,
                                "annotations": []}))
    np.testing.assert_allclose(load_coco(path).soft_targets(), [[0.6, 0.1, 0.8]])
