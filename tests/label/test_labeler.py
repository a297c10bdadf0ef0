import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from spml.data.coco import load_coco
from spml.data.images import Preprocess, load_image
from spml.label.labeler import PseudoLabeler, threshold
from spml.label.writers import write_labels
from spml.train.model import load_checkpoint, model_from_checkpoint


def test_threshold_is_strict():
    scores = np.array([[0.65, 0.650001, 0.2, np.nan]], np.float32)
    np.testing.assert_array_equal(threshold(scores, 0.65), [[False, True, False, False]])


def torch_scores(checkpoint, dataset):
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    pre = Preprocess(ckpt["preprocess"]["image_size"])
    x = np.stack([pre(dataset.images_dir / name) for name in dataset.file_names])
    with torch.inference_mode():
        return torch.sigmoid(model(torch.from_numpy(x))).numpy()


def test_labels_match_torch_and_load_with_pycocotools(tiny_data, tiny_teacher, tiny_onnx, tmp_path):
    dataset = load_coco(tiny_data["sp"])
    scores = PseudoLabeler(tiny_onnx, provider="cpu", batch_size=7, threads=2).scores(dataset)
    expected = torch_scores(tiny_teacher, dataset)
    np.testing.assert_allclose(scores.values, expected, atol=1e-4)

    tau = float(np.median(expected))  # a threshold that makes both positives and negatives
    out = tmp_path / "labels.json"
    write_labels(out, dataset, scores, tau, keep_observed=True, model_path=tiny_onnx)
    coco = COCO(str(out))
    assert coco.dataset["images"] == dataset.images and coco.dataset["categories"] == dataset.categories
    assert coco.dataset["info"]["tau"] == tau
    got = np.zeros_like(dataset.positives)
    col = dataset.column_of()
    row = {im["id"]: n for n, im in enumerate(dataset.images)}
    for a in coco.dataset["annotations"]:
        assert set(a) == {"id", "image_id", "category_id", "score", "iscrowd", "source"}
        got[row[a["image_id"]], col[a["category_id"]]] = True
        assert a["source"] == ("observed" if dataset.positives[row[a["image_id"]], col[a["category_id"]]] else "pseudo")
    np.testing.assert_array_equal(got, (expected > tau) | dataset.positives)


def test_the_io_binding_path_gives_the_same_scores(tiny_data, tiny_teacher, tiny_onnx):
    # the path GPU providers take (input bound as an OrtValue on the device), exercised here on the CPU
    dataset = load_coco(tiny_data["sp"])
    labeler = PseudoLabeler(tiny_onnx, provider="cpu", batch_size=5)
    assert not labeler.io_binding
    labeler.io_binding = True
    np.testing.assert_allclose(labeler.scores(dataset).values, torch_scores(tiny_teacher, dataset), atol=1e-4)


def test_onnxruntime_threads_sleep_when_idle(tiny_onnx):
    # the decode threads need the cores between inferences; spinning intra-op threads would take them
    options = PseudoLabeler(tiny_onnx, provider="cpu").session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_failed_images_are_listed_not_fatal(tiny_data, tiny_onnx, tmp_path):
    raw = json.loads(tiny_data["sp"].read_text())
    raw["images"][0]["file_name"] = "images/train/missing.jpg"
    raw["images"][1]["file_name"] = "../../outside.jpg"
    raw["info"]["images_dir"] = str(tiny_data["sp"].parent)
    (tmp_path / "sp.json").write_text(json.dumps(raw))
    dataset = load_coco(tmp_path / "sp.json")
    scores = PseudoLabeler(tiny_onnx, provider="cpu").scores(dataset)
    assert sorted(scores.failures) == [0, 1]
    assert "escapes" in scores.failures[1]
    summary = write_labels(tmp_path / "labels.json", dataset, scores, 0.5, model_path=tiny_onnx)
    assert summary["failed"] == 2 and summary["images"] == len(dataset) - 2
    lines = (tmp_path / "labels.failures.jsonl").read_text().splitlines()
    assert [json.loads(x)["image_id"] for x in lines] == [raw["images"][0]["id"], raw["images"][1]["id"]]


def test_labeler_never_imports_torch(tiny_onnx, tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"  # import torch -> ImportError
        "from spml.label.cli import main\n"
        f"main(['--model', {str(tiny_onnx)!r}, '--tau', '0.6', '--out', {str(tmp_path / 'l.json')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "l.json").exists()


@pytest.mark.parametrize("tta", ["flip", "flip-crop"])
def test_tta_is_the_mean_of_the_views_in_torch(tta, tiny_data, tiny_teacher, tiny_onnx, tmp_path):
    """--tta against torch on views made independently: torch.flip of the input, and PIL's crop of the
    central 87.5% of the decoded image; the labeler scores all views in one run and averages them."""
    from PIL import Image

    dataset = load_coco(tiny_data["train"])
    ckpt = load_checkpoint(tiny_teacher)
    model = model_from_checkpoint(ckpt)
    size = ckpt["preprocess"]["image_size"]
    pre = Preprocess(size)
    views = []
    for name in dataset.file_names:
        img = load_image(dataset.images_dir / name, size)
        one = [pre.normalize(pre.resize(img))]
        if tta == "flip-crop":
            w, h = img.size
            box = (round(w / 16), round(h / 16), round(w - w / 16), round(h - h / 16))
            one.append(pre.normalize(np.asarray(img.crop(box).resize((size, size), Image.BILINEAR))))
        views.append(one)
    with torch.inference_mode():
        probs = []
        for one in views:
            x = torch.from_numpy(np.stack(one))
            probs.append(torch.cat([torch.sigmoid(model(x)), torch.sigmoid(model(torch.flip(x, dims=[3])))]).mean(0))
    expected = torch.stack(probs).numpy()
    labeler = PseudoLabeler(tiny_onnx, provider="cpu", batch_size=5, tta=tta)
    got = labeler.scores(dataset).values
    np.testing.assert_allclose(got, expected, atol=1e-4)
    plain = PseudoLabeler(tiny_onnx, provider="cpu", batch_size=5).scores(dataset).values
    assert np.abs(got - plain).max() > 1e-3  # the views are not all the same image
    out = tmp_path / "labels.json"
    write_labels(out, dataset, labeler.scores(dataset), 0.5, model_path=tiny_onnx, tta=tta)
    assert json.loads(out.read_text())["info"]["tta"] == tta


@pytest.mark.parametrize("grid", [2, 3])
def test_tiles_score_the_mean_of_the_whole_image_and_the_best_tile(grid, tiny_data, tiny_teacher, tiny_onnx):
    """--tta tiles:N against torch on tiles cut by hand: the image decoded at N x the model's size, the whole of it
    and its N x N tiles of (width // N) x (height // N) pixels each resized to the model's size, a category's score
    (p_whole + max over the tiles' p) / 2, as AEVLP aggregates its global and local views."""
    from PIL import Image

    dataset = load_coco(tiny_data["train"])
    ckpt = load_checkpoint(tiny_teacher)
    model = model_from_checkpoint(ckpt)
    size = ckpt["preprocess"]["image_size"]
    pre = Preprocess(size)
    expected = []
    for name in dataset.file_names:
        img = load_image(dataset.images_dir / name, size * grid)
        tw, th = img.width // grid, img.height // grid
        views = [pre.normalize(np.asarray(img.resize((size, size), Image.BILINEAR)))]
        for row in range(grid):
            for col in range(grid):
                tile = img.crop((col * tw, row * th, col * tw + tw, row * th + th))
                views.append(pre.normalize(np.asarray(tile.resize((size, size), Image.BILINEAR))))
        with torch.inference_mode():
            p = torch.sigmoid(model(torch.from_numpy(np.stack(views)))).numpy()
        expected.append((p[0] + p[1:].max(axis=0)) / 2)
    got = PseudoLabeler(tiny_onnx, provider="cpu", batch_size=3, tta=f"tiles:{grid}").scores(dataset).values
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-4)
    plain = PseudoLabeler(tiny_onnx, provider="cpu", batch_size=3).scores(dataset).values
    assert np.abs(got - plain).max() > 1e-3  # the tiles count


def test_an_unknown_tta_names_the_valid_ones(tiny_onnx):
    from spml.errors import SpmlError

    for bad in ("tiles:0", "tiles:9", "tiles:", "tiles:2x2", "grid"):
        with pytest.raises(SpmlError, match="valid: none, flip, flip-crop, tiles:N"):
            PseudoLabeler(tiny_onnx, provider="cpu", tta=bad)


def test_a_persons_answers_survive_whatever_the_teacher_scores(tmp_path):
    from spml.label.labeler import Scores

    cats = [{"id": 5, "name": "a"}, {"id": 2, "name": "b"}, {"id": 9, "name": "c"}]
    images = [{"id": 1, "file_name": "1.jpg", "neg_category_ids": [2]},  # a person said: no b in image 1
              {"id": 2, "file_name": "2.jpg"},
              {"id": 3, "file_name": "3.jpg", "neg_category_ids": [5, 9]}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 5, "source": "observed"},
                   {"id": 2, "image_id": 2, "category_id": 9, "source": "verified"},  # a person's yes
                   {"id": 3, "image_id": 3, "category_id": 2}]
    path = tmp_path / "observed.json"
    path.write_text(json.dumps({"images": images, "categories": cats, "annotations": annotations}))
    dataset = load_coco(path)
    values = np.array([[0.2, 0.95, 0.9],   # the teacher is sure of b, which the person denied
                       [0.8, 0.1, 0.05],   # and unsure of c, which the person confirmed
                       [0.99, 0.5, 0.01]], np.float32)
    out = tmp_path / "labels.json"
    write_labels(out, dataset, Scores(values), 0.65, model_path=path, model_sha256="x", tau_low=0.15)
    written = json.loads(out.read_text())
    got = sorted((a["image_id"], a["category_id"], a["source"]) for a in written["annotations"])
    assert got == [(1, 5, "observed"), (1, 9, "pseudo"), (2, 5, "pseudo"), (2, 9, "verified"), (3, 2, "observed")]
    negatives = {im["id"]: sorted(im["neg_category_ids"]) for im in written["images"]}
    unknown = {im["id"]: sorted(im["not_exhaustive_category_ids"]) for im in written["images"]}
    # image 1: b stays negative though scored 0.95; image 3: a stays negative though scored 0.99
    assert negatives == {1: [2], 2: [2], 3: [5, 9]} and unknown == {1: [], 2: [], 3: []}
    # without the ignore band the records are copied, their neg_category_ids with them
    write_labels(out, dataset, Scores(values), 0.65, model_path=path, model_sha256="x")
    written = json.loads(out.read_text())
    assert [im.get("neg_category_ids") for im in written["images"]] == [[2], None, [5, 9]]
    assert (1, 2) not in {(a["image_id"], a["category_id"]) for a in written["annotations"]}
    # --no-keep-observed: the teacher alone decides
    write_labels(out, dataset, Scores(values), 0.65, model_path=path, model_sha256="x", keep_observed=False)
    assert (1, 2) in {(a["image_id"], a["category_id"]) for a in json.loads(out.read_text())["annotations"]}


def test_the_other_formats_keep_a_persons_no_too(tmp_path):
    from spml.data.formats import LabelRows
    from spml.label.labeler import Scores

    cats = [{"id": 5, "name": "a"}, {"id": 2, "name": "b"}]
    images = [{"id": 1, "file_name": "1.jpg", "neg_category_ids": [2]}, {"id": 2, "file_name": "2.jpg"}]
    path = tmp_path / "observed.json"
    path.write_text(json.dumps({"images": images, "categories": cats,
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 5}]}))
    dataset = load_coco(path)
    values = np.array([[0.1, 0.9], [0.9, 0.9]], np.float32)
    [(_, positive, _, _)] = LabelRows.from_scores(dataset, values, 0.65).blocks()
    np.testing.assert_array_equal(positive, [[True, False], [True, True]])
    [(_, positive, _, _)] = LabelRows.from_scores(dataset, values, 0.65, keep_observed=False).blocks()
    np.testing.assert_array_equal(positive, [[False, True], [True, True]])
