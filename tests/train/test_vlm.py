"""The built-in VLM (spml-data vlm): web-style captions of the scenes, and a (tiny) trained model that loads
through the ordinary --arch open_clip/CONFIG.json --weights FILE path."""

import json
import re

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from spml.train.vlm import PARAPHRASES, builtin_vlm, caption, draw_scenes  # noqa: E402


def test_captions_name_only_the_scenes_objects_in_free_order_with_omissions():
    rng = np.random.default_rng(0)
    scene = ["star", "crescent", "bar"]
    others = {w for name, words in PARAPHRASES.items() if name not in scene for w in words
              if not any(w in mine for n in scene for mine in PARAPHRASES[n])}
    named_first, omitted, words_used = set(), 0, set()
    for _ in range(400):
        text = caption(scene, rng)
        found = [n for n in scene if any(re.search(rf"\b{re.escape(w)}s?\b", text) for w in PARAPHRASES[n])]
        assert found, text  # one object at least is always named
        assert not any(re.search(rf"\b{re.escape(w)}s?\b", text) for w in others), text
        omitted += len(found) < len(scene)
        positions = {n: min(m.start() for w in PARAPHRASES[n] for m in re.finditer(rf"\b{re.escape(w)}", text))
                     for n in found}
        named_first.add(min(positions, key=positions.get))
        words_used |= {w for n in scene for w in PARAPHRASES[n] if re.search(rf"\b{re.escape(w)}s?\b", text)}
    assert named_first == set(scene)  # free word order
    assert 0.2 < omitted / 400 < 0.7  # omissions, as alt-texts have: P(some of 3 left out) = 1 - 0.8^3 ~ 0.49
    assert {"moon", "crescent", "star", "stripe"} <= words_used  # paraphrases
    assert caption(["ring", "ring"], np.random.default_rng(1)).count("two") <= 1


def test_scenes_are_not_the_built_in_datasets(tmp_path):
    from spml.data.demo import DemoConfig, make_demo
    from spml.data.images import Preprocess, load_image

    paths = make_demo(tmp_path, DemoConfig(num_train=6, num_test=1, seed=0))
    pre = Preprocess(32)
    ours, _ = draw_scenes(6, 0, log=lambda s: None)
    theirs = [pre.resize(load_image(tmp_path / im["file_name"]))
              for im in json.loads(paths["train"].read_text())["images"]]
    for a in ours:
        assert all(np.abs(a.astype(int) - b.astype(int)).mean() > 5 for b in theirs)


def test_a_tiny_vlm_trains_and_loads_through_the_open_clip_config_path(tiny_data):
    from spml.train.zero_shot import read_categories, zero_shot_checkpoint
    from spml.train.model import model_from_checkpoint

    config, weights = builtin_vlm(0, log=lambda s: None, num_scenes=40, epochs=1, batch_size=20)
    assert json.loads(config.read_text())["preprocess_cfg"]["resize_mode"] == "squash"
    ckpt = zero_shot_checkpoint(f"open_clip/{config}", read_categories(tiny_data["sp"]), weights=weights)
    from spml.data.images import Preprocess

    pre = Preprocess.from_dict(ckpt["preprocess"])
    assert (pre.resize_mode, pre.interpolation, pre.size) == ("squash", "bilinear", 32)
    assert pre.mean == open_clip.OPENAI_DATASET_MEAN  # what train_vlm normalised with
    state = torch.load(weights, weights_only=True)
    assert all(torch.equal(ckpt["model"][k], v) for k, v in state.items() if k.startswith("visual."))
    with torch.no_grad():
        assert model_from_checkpoint(ckpt)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert builtin_vlm(0, num_scenes=40, epochs=1) == (config, weights)  # cached


def test_spml_data_vlm_is_the_train_stages_command_run_as_a_program():
    import subprocess
    import sys

    from click.testing import CliRunner

    from spml.data.cli import main as data_cli

    result = CliRunner().invoke(data_cli, ["vlm", "--help"])
    assert result.exit_code == 0 and result.output.startswith("Usage: spml-data vlm [OPTIONS]"), result.output
    bad = subprocess.run([sys.executable, "-c", "from spml.data.cli import main; main()", "vlm", "--seed", "x"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Invalid value for '--seed'" in bad.stderr, bad.stderr
