import json

import numpy as np
import pytest

from spml.data.coco import dataset_from_dict, load_coco
from spml.data.protocol import single_positive
from spml.errors import SpmlError


def coco(images=3, annotations=None, categories=None):
    return {
        "images": [{"id": 10 + i, "file_name": f"{i}.jpg"} for i in range(images)],
        "categories": categories or [{"id": 90, "name": "toaster"}, {"id": 1, "name": "person"}, {"id": 44, "name": "bottle"}],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 10, "category_id": 44}, {"id": 2, "image_id": 10, "category_id": 90},
            {"id": 3, "image_id": 11, "category_id": 1}, {"id": 4, "image_id": 11, "category_id": 1},
        ],
    }


def test_gappy_category_ids_map_to_list_positions():
    ds = dataset_from_dict(coco())
    # columns follow the categories list: toaster (90) -> 0, person (1) -> 1, bottle (44) -> 2
    np.testing.assert_array_equal(ds.positives, [[1, 0, 1], [0, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("raw, message", [
    ([1, 2], "not a COCO annotations file"),
    ({"images": []}, "no 'categories' list"),
    ({"categories": [{"id": 1}]}, "no 'images' list"),
    (coco(images=0, annotations=[]), "empty"),
    ({**coco(), "images": coco()["images"] * 2}, "duplicate image id"),
    ({**coco(), "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], "annotations": []}, "duplicate category id"),
    (coco(annotations=[{"id": 1, "image_id": 999, "category_id": 1}]), "image 999"),
    (coco(annotations=[{"id": 1, "image_id": 10, "category_id": 5}]), "category 5"),
])
def test_bad_annotations_give_one_clear_error(raw, message):
    with pytest.raises(SpmlError, match=message):
        dataset_from_dict(raw)


def test_load_errors(tmp_path):
    with pytest.raises(SpmlError, match="no such file"):
        load_coco(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpmlError, match="not a JSON file"):
        load_coco(tmp_path / "bad.json")


def test_single_positive_keeps_one_true_positive_per_image_and_drops_empty():
    ds = dataset_from_dict(coco())
    out, dropped = single_positive(ds, seed=1)
    assert dropped == 1 and [im["id"] for im in out["images"]] == [10, 11]
    assert len(out["annotations"]) == 2
    by_image = {a["image_id"]: a["category_id"] for a in out["annotations"]}
    assert by_image[10] in (44, 90) and by_image[11] == 1
    assert out["categories"] == ds.categories
    assert dataset_from_dict(json.loads(json.dumps(out))).positives.sum(axis=1).tolist() == [1, 1]


def test_single_positive_is_uniform_over_categories_and_seeded():
    # an image with 1 annotation of category A and 3 of category B: each category is kept half the time
    raw = coco(images=1, annotations=[{"id": 1, "image_id": 10, "category_id": 90}] +
               [{"id": i, "image_id": 10, "category_id": 1} for i in (2, 3, 4)])
    ds = dataset_from_dict(raw)
    kept = [single_positive(ds, seed=s)[0]["annotations"][0]["category_id"] for s in range(400)]
    assert 0.4 < kept.count(90) / 400 < 0.6
    assert single_positive(ds, seed=7)[0] == single_positive(ds, seed=7)[0]


def test_the_package_names_are_the_functions_even_after_their_modules_are_imported():
    # a submodule named like its function would shadow the lazy name once imported (the README's snippet broke so)
    import importlib
    import types

    import spml.data

    for name, module in spml.data._WHERE.items():
        importlib.import_module(module)
        assert not isinstance(getattr(spml.data, name), types.ModuleType), name
