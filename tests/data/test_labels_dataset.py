"""spml.data.LabelsDataset, and the "Use the labels elsewhere" snippets (docs/labels.md) run as written on tiny data."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spml.files import write_json

PAGE = Path(__file__).resolve().parents[2] / "docs" / "labels.md"  # "Use the labels elsewhere"


@pytest.fixture
def labels_file(tiny_data, tmp_path):
    """A labels file like spml-label's (pseudo and observed annotations, spml_scores), in another folder than
    its images, which it records in info.images_dir; with gappy category ids in a shuffled order."""
    raw = json.loads(Path(tiny_data["train"]).read_text())
    rng = np.random.default_rng(0)
    images = raw["images"][:4]  # few: the page's timm snippet trains a resnet18 at 224 px on them
    categories = [raw["categories"][j] for j in rng.permutation(len(raw["categories"]))]
    keep = {im["id"] for im in images}
    anns = []
    for a in raw["annotations"]:
        if a["image_id"] in keep:
            anns.append({"id": len(anns) + 1, "image_id": a["image_id"], "category_id": a["category_id"], "iscrowd": 0,
                         "score": 0.9, "source": "observed" if len(anns) % 3 == 0 else "pseudo"})
    for im in images:
        im["spml_scores"] = [round(float(v), 3) for v in rng.uniform(0, 1, len(categories))]
    path = tmp_path / "labels" / "labels.json"
    write_json(path, {"info": {"images_dir": str(Path(tiny_data["train"]).parent)}, "images": images,
                      "categories": categories, "annotations": anns})
    return path, images, categories, anns


def expected_targets(images, categories, anns, soft=False):
    # by hand, from the annotation list: column j is categories[j], whatever its id
    col = {c["id"]: j for j, c in enumerate(categories)}
    row = {im["id"]: n for n, im in enumerate(images)}
    out = np.array([im["spml_scores"] for im in images], np.float32) if soft else np.zeros((len(images), len(categories)), np.float32)
    for a in anns:
        if not soft or a["source"] == "observed":
            out[row[a["image_id"]], col[a["category_id"]]] = 1.0
    return out


def test_targets_in_category_order_and_images_from_the_file(labels_file):
    from PIL import Image

    from spml.data import LabelsDataset

    path, images, categories, anns = labels_file
    dataset = LabelsDataset(path)
    assert len(dataset) == len(images)
    assert dataset.categories == categories and dataset.classes == [c["name"] for c in categories]
    hard = expected_targets(images, categories, anns)
    for n in range(len(dataset)):
        image, target = dataset[n]
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert target.dtype == torch.float32
        np.testing.assert_array_equal(target.numpy(), hard[n])
    assert hard.sum() > len(images)  # the file has images with several positives

    soft = LabelsDataset(path, soft=True, transform=lambda im: torch.tensor(im.size))
    np.testing.assert_allclose(torch.stack([soft[n][1] for n in range(len(soft))]).numpy(),
                               expected_targets(images, categories, anns, soft=True))
    assert soft[0][0].tolist() == [images[0]["width"], images[0]["height"]]  # the transform got the PIL image


def test_images_folder_given_and_errors(labels_file, tiny_data, tmp_path):
    from spml.data import LabelsDataset
    from spml.data.images import ImageError
    from spml.errors import SpmlError

    path, images, *_ = labels_file
    with pytest.raises(ImageError, match="missing file"):
        LabelsDataset(path, images=tmp_path / "empty")[0]
    raw = json.loads(path.read_text())
    for im in raw["images"]:
        del im["spml_scores"]
    write_json(tmp_path / "hard.json", raw)
    assert len(LabelsDataset(tmp_path / "hard.json", images=Path(tiny_data["train"]).parent)) == len(images)
    with pytest.raises(SpmlError, match="spml-label --soft"):
        LabelsDataset(tmp_path / "hard.json", soft=True)


def test_importing_spml_data_does_not_import_torch():
    code = "import sys, spml.data, spml.label.labeler; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def section_blocks(lang):
    """The fenced blocks of docs/labels.md whose info string is `lang`."""
    section = PAGE.read_text()
    blocks, current, info = [], None, ""
    for line in section.splitlines():
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_readme_python_snippets_run(labels_file, monkeypatch):
    pytest.importorskip("timm")
    path, images, categories, anns = labels_file
    monkeypatch.chdir(path.parent)  # the snippets read ./labels.json
    blocks = [b for b in section_blocks("python") if "LabelsDataset" in b]  # the section's FiftyOne/CSV ones aside
    assert len(blocks) == 2 and len(blocks[0].strip().splitlines()) == 5
    torch.manual_seed(0)
    first: dict = {}
    exec(compile(blocks[0], "docs/labels.md-LabelsDataset", "exec"), first)
    images_batch, targets = next(iter(first["loader"]))
    assert images_batch.shape == (len(images), 3, 224, 224)
    assert sorted(targets.sum(1).tolist()) == sorted(expected_targets(images, categories, anns).sum(1).tolist())
    second: dict = {}
    exec(compile(blocks[1], "docs/labels.md-timm", "exec"), second)
    assert second["model"].get_classifier().out_features == len(categories)
    assert torch.isfinite(second["loss"])


def test_readme_spml_command_lines_parse():
    """The shell lines name real commands and options, with values of the right types (click parses them
    without running them: they need published weights)."""
    from importlib import import_module

    scripts = dict(re.findall(r'^(spml-[a-z]+) = "([\w.:]+)"$', (PAGE.parents[1] / "pyproject.toml").read_text(), re.M))
    lines = [line.split("#")[0] for block in section_blocks("") for line in block.splitlines()]
    commands = [shlex.split(part) for line in lines for part in line.split("&&") if part.strip()]
    assert any("timm/convnext_tiny" in c for c in commands)
    for argv in commands:
        module, _, attr = scripts[argv[0]].partition(":")
        command = getattr(import_module(module), attr)
        ctx = command.make_context(argv[0], argv[1:])
        if "--arch" in argv:
            assert ctx.params["arch"].startswith("timm/")
