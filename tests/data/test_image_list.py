"""Image folders and lists as COCO datasets: the walk, the three list formats, ids, observed labels, bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from spml.data.image_list import load_image_folder, load_image_list, scan_folder
from spml.errors import SpmlError

CATS = [{"id": 3, "name": "dog"}, {"id": 8, "name": "traffic light"}]


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    sizes = {"b.jpg": (30, 20), "a/z.png": (12, 16), "a/c.JPEG": (8, 9), "a/deep/d.webp": (5, 7)}
    for name, size in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (200, 10, 10)).save(root / name)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(b"")
    (root / ".git").mkdir()
    Image.new("RGB", (4, 4)).save(root / ".git" / "x.png")
    return root, sizes


def test_folder_walk_is_recursive_sorted_and_skips_non_images(photos):
    root, sizes = photos
    assert scan_folder(root) == ["a/c.JPEG", "a/deep/d.webp", "a/z.png", "b.jpg"]
    ds = load_image_folder(root, CATS)
    assert ds.file_names == sorted(sizes)
    assert ds.image_ids == [1, 2, 3, 4]
    assert [(im["width"], im["height"]) for im in ds.images] == [sizes[f] for f in ds.file_names]
    assert not ds.positives.any() and ds.categories == CATS and ds.images_dir == root


def test_exif_rotated_sizes_are_the_decoded_ones(tmp_path):
    img = Image.new("RGB", (40, 10))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90: decoded as 10 x 40
    img.save(tmp_path / "r.jpg", exif=exif)
    ds = load_image_folder(tmp_path, CATS)
    assert (ds.images[0]["width"], ds.images[0]["height"]) == (10, 40)


def test_empty_or_missing_folder_is_one_clear_error(tmp_path):
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(SpmlError, match="no image files"):
        scan_folder(tmp_path)
    with pytest.raises(SpmlError, match="no such folder"):
        scan_folder(tmp_path / "nope")


def test_txt_list_relative_and_absolute_paths(photos, tmp_path):
    root, sizes = photos
    lst = root / "list.txt"
    lst.write_text(f"# my photos\nb.jpg\n\n{root / 'a/z.png'}\nmissing.jpg\n")
    ds = load_image_list(lst, CATS)
    assert ds.file_names == ["b.jpg", "a/z.png", "missing.jpg"]  # absolute inside the folder made relative
    assert ds.images_dir == root and ds.image_ids == [1, 2, 3]
    assert "width" not in ds.images[2]  # unreadable: the labeler lists it as a failure
    # absolute paths only, the list elsewhere: their common folder is the images folder
    other = tmp_path / "elsewhere.txt"
    other.write_text(f"{root / 'a/z.png'}\n{root / 'a/deep/d.webp'}\n")
    ds = load_image_list(other, CATS)
    assert ds.images_dir == root / "a" and ds.file_names == ["z.png", "deep/d.webp"]


def test_jsonl_and_csv_lists_with_ids_and_observed_labels(photos):
    root, _ = photos
    (root / "l.jsonl").write_text(
        json.dumps({"file_name": "b.jpg", "id": 70, "labels": ["dog", 8]}) + "\n"
        + json.dumps({"file_name": "a/z.png", "id": 9}) + "\n")
    ds = load_image_list(root / "l.jsonl", CATS)
    assert ds.image_ids == [70, 9]
    np.testing.assert_array_equal(ds.positives, [[True, True], [False, False]])
    # the CSV spml writes (names with _ for spaces) reads back as observed labels
    (root / "l.csv").write_text('file_name,id,labels\nb.jpg,5,traffic_light\n"a/z.png",6,\n')
    ds = load_image_list(root / "l.csv", CATS)
    assert ds.image_ids == [5, 6]
    np.testing.assert_array_equal(ds.positives, [[False, True], [False, False]])
    assert ds.path == (root / "l.csv").resolve()


@pytest.mark.parametrize("name, text, message", [
    ("l.csv", "path,labels\nb.jpg,dog\n", "no 'file_name' column"),
    ("l.csv", "file_name,labels\nb.jpg,cat\n", "unknown category 'cat'"),
    ("l.csv", "file_name,labels\nb.jpg,Dog\n", "did you mean 'dog'"),
    ("l.jsonl", '{"file_name": "b.jpg", "id": 1}\n{"file_name": "a/z.png"}\n', "give all or none"),
    ("l.jsonl", '{"file_name": "b.jpg", "id": 1}\n{"file_name": "a/z.png", "id": 1}\n', "duplicate image id 1"),
    ("l.jsonl", '{"file_name": "b.jpg", "id": "x"}\n', "not an integer"),
    ("l.jsonl", "{nope\n", "l.jsonl:1: not a JSON line"),
    ("l.txt", "\n# nothing\n", "the list is empty"),
])
def test_bad_lists_are_one_line_errors(photos, name, text, message):
    root, _ = photos
    (root / name).write_text(text)
    with pytest.raises(SpmlError, match=message):
        load_image_list(root / name, CATS)
