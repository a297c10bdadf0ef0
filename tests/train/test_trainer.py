"""The trainer with every loss, and exact resumption with the per-image state of ROLE / EM+APL / LL-Cp."""

import pytest
import torch

from spml.train import trainer
from spml.train.trainer import ALL_LOSSES, TrainConfig, last_path, train


def config(data, out, **kw):
    base = dict(ann=str(data["sp"]), arch="resnet18", image_size=32, epochs=1, batch_size=16, pretrained=False,
                out=str(out), progress=False, seed=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("loss", [name for name in ALL_LOSSES if name not in ("bce", "an")])
def test_every_loss_trains(loss, tiny_data, tmp_path):
    # the loss, not the network, is under test: spml's small cnn4 trains in a fraction of resnet18's time
    out = train(config(tiny_data, tmp_path / "m.pt", loss=loss, arch="cnn4"), log=lambda s: None)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["config"]["loss"] == loss
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("loss,mode", [pytest.param("em-apl", "end-to-end", marks=pytest.mark.slow),
                                       pytest.param("ll-cp", "end-to-end", marks=pytest.mark.slow),
                                       pytest.param("role", "end-to-end", marks=pytest.mark.slow),
                                       ("role", "linear")])  # linear: the head alone, on cached features: quick
def test_resume_restores_the_loss_state_exactly(loss, mode, tiny_data, tmp_path, interrupt):
    loss_args = {"em-apl": {"warmup_epochs": 1}, "ll-cp": {"delta_rel": 0.2}}.get(loss, {})
    kw = dict(loss=loss, mode=mode, epochs=2, keep_last=True, loss_args=loss_args)
    whole = train(config(tiny_data, tmp_path / "whole.pt", **kw), log=lambda s: None)

    restore = interrupt(trainer, "train_one_epoch", 2)  # during the second epoch
    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_data, tmp_path / "part.pt", **kw), log=lambda s: None)
    restore()
    part = train(config(tiny_data, tmp_path / "part.pt", resume=True, **kw), log=lambda s: None)

    a, b = torch.load(last_path(whole), weights_only=True), torch.load(last_path(part), weights_only=True)
    assert a["loss_state"] and set(a["loss_state"]) == set(b["loss_state"])
    for key in a["loss_state"]:
        torch.testing.assert_close(a["loss_state"][key], b["loss_state"][key], rtol=0, atol=0)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)


@pytest.mark.parametrize("loss,mode", [("gr", "end-to-end"), ("em", "linear")])
def test_the_trainer_passes_each_rows_observed_negatives(loss, mode, tiny_data, tmp_path, monkeypatch):
    import json

    import numpy as np

    from spml.data.coco import load_coco
    from spml.train import losses, stateful_losses

    raw = json.loads(open(tiny_data["sp"]).read())
    gen = np.random.default_rng(0)
    cat_ids = [c["id"] for c in raw["categories"]]
    positive = {a["image_id"]: a["category_id"] for a in raw["annotations"]}
    for im in raw["images"][::2]:  # a person's no on a few categories of every other image
        im["neg_category_ids"] = [c for c in gen.choice(cat_ids, 2, replace=False).tolist() if c != positive[im["id"]]]
    path = tmp_path / "sp-neg.json"
    path.write_text(json.dumps(raw))
    want = load_coco(path).negatives
    seen = {}

    def record(rows, negatives):
        for r, n in zip(rows.tolist(), negatives.cpu().numpy()):
            seen[r] = n

    real_gr, real_em = stateful_losses.GeneralizedRobustLoss.forward, losses.entropy_maximization
    monkeypatch.setattr(stateful_losses.GeneralizedRobustLoss, "forward", lambda self, lg, t, k, rows, e, *, negatives=None:
                        record(rows, negatives) or real_gr(self, lg, t, k, rows, e, negatives=negatives))
    # the plain losses get no rows: their batch's negatives are matched to the images through the targets' order
    calls = []
    monkeypatch.setattr(losses, "entropy_maximization", lambda lg, t, k=None, *, negatives=None, **kw:
                        calls.append(negatives.cpu().numpy()) or real_em(lg, t, k, negatives=negatives, **kw))
    train(config(tiny_data, tmp_path / "m.pt", ann=str(path), loss=loss, mode=mode, batch_size=8), log=lambda s: None)
    assert want.sum() > 10
    if loss == "gr":
        assert len(seen) == len(want)
        np.testing.assert_array_equal(np.stack([seen[r] for r in range(len(want))]), want)
    else:
        assert sum(int(c.sum()) for c in calls) == int(want.sum()) and sum(len(c) for c in calls) == len(want)


def test_a_reviewed_file_is_partial_labels_a_labels_file_is_not(tmp_path):
    import json

    from spml.data.coco import load_coco
    from spml.train.trainer import choose_loss

    def loss_of(sources):
        images = [{"id": 1, "file_name": "1.jpg", "neg_category_ids": [3]}, {"id": 2, "file_name": "2.jpg"}]
        annotations = [{"id": k + 1, "image_id": 1 + (k > 0), "category_id": 1 + k, "source": s}
                       for k, s in enumerate(sources)]
        path = tmp_path / "a.json"
        path.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": c} for c in (1, 2, 3)]}))
        return choose_loss(load_coco(path), None)[0]

    assert loss_of(["observed", "observed", "verified"]) == "em"  # spml-review merge's output: a person's answers
    assert loss_of(["observed", "observed", "observed"]) == "bce"  # full labels, as before
    assert loss_of(["observed", "pseudo", "verified"]) == "bce"  # spml-label's, kept answers and all: the student's
