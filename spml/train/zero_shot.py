"""A zero-shot teacher from an open_clip model, with no training: its image tower and the zero-shot head of the
categories (spml.train.clip_models), as an spml checkpoint (a dict, the one the exporter writes ONNX from); and its
calibration by single positives.

Raw CLIP logits are made for a softmax over the classes (logit scale ~100 times cosines ~0.2-0.3), so as
per-class sigmoids every probability is ~1. Calibration fits the few parameters that turn them into multi-label
probabilities, on the frozen logits z of the single-positive images: logit' = z / T + b_c, one temperature and a
bias per class. Candidates (CANDIDATES), each fitted on 80% of the images and measured on the other 20%, the better
kept (and refitted on all):
- em: the EM loss (Zhou et al. 2022, spml's teacher loss): -log p on the observed positive, -alpha H(p) elsewhere;
- an: assume negative, binary cross-entropy with every unobserved label a negative (Cole et al. 2021): logistic
  regression with a shared slope and a per-class intercept;
- raw: no calibration (T = 1, b = 0), the baseline.
The held-out measure is the F1 at tau 0.5 of the single positives against the unobserved labels taken as
negatives (HELD_OUT_MEASURE): per-class AP is blind to a per-class affine map, so the measure has to threshold; it
undercounts the precision of every candidate the same way, by the unobserved positives."""

from __future__ import annotations

import math

import numpy as np
import torch

from spml.data.coco import CocoDataset, load_coco, same_categories
from spml.data.images import ImageError
from spml.data.json_stream import load_json
from spml.errors import SpmlError
from spml.train.clip_models import clip_input_size, clip_model_config, clip_preprocess, clip_record, create_clip_model
from spml.train.model import FORMAT_VERSION

CANDIDATES = ("em", "an", "raw")
HELD_OUT_SHARE = 0.2
HELD_OUT_MEASURE = "F1 at tau 0.5, unobserved labels as negatives, on 20% of the single-positive images held out"
TAU = 0.5


def read_categories(path) -> list[dict]:
    """CATS: a COCO file's categories (their ids kept), or a .txt of names, one a line (ids 1, 2, ...)."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() == ".txt":
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            raise SpmlError(f"--categories {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SpmlError(f"--categories {path}: cannot read it ({type(e).__name__})") from None
        if not names:
            raise SpmlError(f"--categories {path}: no names (one a line)") from None
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise SpmlError(f"--categories {path}: {', '.join(twice[:3])} named twice") from None
        return [{"id": i, "name": name} for i, name in enumerate(names, 1)]
    return _coco_categories(path)


def _coco_categories(path) -> list[dict]:
    """A COCO file's categories only: a file of categories with no images is a fine CATS."""
    raw = load_json(path, "--categories")
    categories = raw.get("categories") if isinstance(raw, dict) else None
    if not isinstance(categories, list) or not categories:
        raise SpmlError(f"--categories {path}: no categories (a COCO file's, or a .txt of names)") from None
    out = []
    for c in categories:
        if not isinstance(c, dict) or isinstance(c.get("id"), bool) or not isinstance(c.get("id"), int) \
                or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise SpmlError(f"--categories {path}: a category needs an integer id and a name: {str(c)[:80]}") from None
        out.append({"id": c["id"], "name": c["name"].strip()})
    ids = [c["id"] for c in out]
    if len(set(ids)) != len(ids):
        raise SpmlError(f"--categories {path}: category id {next(i for i in ids if ids.count(i) > 1)} twice") from None
    return out


def zero_shot_checkpoint(arch: str, categories: list[dict], *, pretrained=None, weights=None,
                         prompts: list[str] | None = None, prompts_file=None) -> dict:
    """An spml checkpoint of the zero-shot teacher (what spml.export.onnx_export exports), in memory."""
    config = clip_model_config(arch)
    names = [c["name"] for c in categories]
    model = create_clip_model(arch, len(categories), pretrained, weights, class_names=names, prompts=prompts)
    record = clip_record(arch, pretrained, prompts, config)
    preprocess = clip_preprocess(arch, None, pretrained, config)
    return {
        "format_version": FORMAT_VERSION,
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "epoch": None, "best_metric": None, "history": [],
        "config": {"arch": arch, "pretrained": pretrained if isinstance(pretrained, str) else bool(pretrained),
                   "weights": str(weights) if weights else None, "prompts": str(prompts_file) if prompts_file else None,
                   "image_size": clip_input_size(arch, config), "mode": "zero-shot"},
        "categories": [{"id": int(c["id"]), "name": str(c["name"])} for c in categories],
        "preprocess": preprocess.to_dict(),
        "data": {},
        "open_clip": record,
    }


@torch.inference_mode()
def frozen_logits(ckpt: dict, dataset: CocoDataset, batch_size: int = 32, log=print) -> np.ndarray:
    """(N, C) logits of the checkpoint's model on every image of `dataset`, in the model's category order."""
    from torch.utils.data import DataLoader

    from spml.data.images import Preprocess
    from spml.train.data import ImageLabels
    from spml.train.model import model_from_checkpoint

    model = model_from_checkpoint(ckpt)
    data = ImageLabels(dataset, dataset.positives.astype(np.float32), None, Preprocess.from_dict(ckpt["preprocess"]))
    out = []
    try:
        for x, *_ in DataLoader(data, batch_size=batch_size, shuffle=False):
            out.append(model(x).float().numpy())
    except ImageError as e:
        raise SpmlError(f"cannot read image {e}") from None
    log(f"zero-shot logits of {len(dataset)} images")
    return np.concatenate(out) if out else np.zeros((0, len(ckpt["categories"])), np.float32)


def fit_calibration(logits: np.ndarray, positives: np.ndarray, loss: str, alpha: float | None = None,
                    *, rounds: int = 20) -> tuple[float, np.ndarray]:
    """(temperature T, per-class bias b) minimising `loss` (em or an) of z / T + b against the single positives,
    with L-BFGS (the problem is small and smooth: C + 1 parameters). Fitted on standardised logits, (z - m) / s
    times exp(u) plus beta (raw CLIP logits, ~25 with a spread of ~2, make the plain parameters ill-conditioned and
    saturate every sigmoid), then mapped back: T = s / exp(u), b = beta - m exp(u) / s."""
    from spml.train.losses import compute_loss

    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(positives, dtype=torch.float64)
    m = float(z.mean())
    s = max(float(z.std()), 1e-6) if z.numel() > 1 else 1.0
    standard = (z - m) / s
    log_gain = torch.zeros((), dtype=torch.float64, requires_grad=True)
    beta = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    hparams = {} if loss == "an" else ({"alpha": alpha} if alpha is not None else {})
    optimizer = torch.optim.LBFGS([log_gain, beta], lr=1, max_iter=500, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        value = compute_loss(loss, standard * log_gain.exp() + beta, y, **hparams)
        value.backward()
        return value

    previous = math.inf
    for _ in range(rounds):  # L-BFGS restarts until the loss stops moving
        value = float(optimizer.step(closure).detach())
        if previous - value < 1e-13:
            break
        previous = value
    gain = float(log_gain.detach().exp())
    return s / gain, beta.detach().numpy() - m * gain / s


def held_out_f1(logits: np.ndarray, positives: np.ndarray, temperature: float, bias: np.ndarray) -> float:
    """HELD_OUT_MEASURE on these rows: micro F1 of the labels at tau, the unobserved counted as negatives."""
    predicted = (logits / temperature + bias) > math.log(TAU / (1 - TAU))
    observed = positives > 0.5
    tp = float((predicted & observed).sum())
    fp, fn = float((predicted & ~observed).sum()), float((~predicted & observed).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1.0)


def choose_calibration(logits: np.ndarray, positives: np.ndarray, seed: int = 0, log=print) -> dict:
    """Every candidate fitted on 80% of the rows and measured on the rest; the best refitted on all rows.
    Returns {"method", "temperature", "bias", "held_out": {candidate: F1}, "measure"}."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(logits))
    cut = max(1, int(round(len(logits) * HELD_OUT_SHARE)))
    held, fit = order[:cut], order[cut:]
    if len(fit) == 0:
        raise SpmlError(f"--calibrate: {len(logits)} image(s) is too few to fit and hold out") from None
    scores = {}
    for method in CANDIDATES:
        temperature, bias = _fit(method, logits[fit], positives[fit])
        scores[method] = held_out_f1(logits[held], positives[held], temperature, bias)
    best = max(CANDIDATES, key=lambda m: scores[m])  # ties: the earlier candidate (em, the teacher loss)
    temperature, bias = _fit(best, logits, positives)
    log("calibration, held-out " + HELD_OUT_MEASURE + ": "
        + ", ".join(f"{m} {scores[m]:.4f}" for m in CANDIDATES) + f"; kept {best} (T {temperature:.4g})")
    return {"method": best, "temperature": temperature, "bias": [float(b) for b in bias],
            "held_out": scores, "measure": HELD_OUT_MEASURE, "candidates": list(CANDIDATES)}


def _fit(method: str, logits: np.ndarray, positives: np.ndarray) -> tuple[float, np.ndarray]:
    if method == "raw":
        return 1.0, np.zeros(logits.shape[1])
    return fit_calibration(logits, positives, method)


def apply_calibration(ckpt: dict, calibration: dict) -> dict:
    """The checkpoint whose head outputs z / T + b: weight / T, bias / T + b (its ONNX graph stays one Linear)."""
    state = dict(ckpt["model"])
    t = float(calibration["temperature"])
    bias = torch.as_tensor(calibration["bias"], dtype=state["head.bias"].dtype)
    state["head.weight"] = state["head.weight"] / t
    state["head.bias"] = state["head.bias"] / t + bias
    record = {**ckpt["open_clip"], "calibration": calibration}
    return {**ckpt, "model": state, "open_clip": record}


def calibrate_checkpoint(ckpt: dict, sp_ann, images=None, log=print) -> dict:
    """The zero-shot checkpoint calibrated on the single positives of `sp_ann` (its categories must be the
    checkpoint's), with the training data recorded like a trained teacher's."""
    dataset = load_coco(sp_ann, images)
    columns = same_categories(ckpt["categories"], dataset, f"--calibrate {sp_ann}")
    positives = dataset.positives[:, columns].astype(np.float32)
    if not positives.any():
        raise SpmlError(f"--calibrate {sp_ann}: no positive labels to calibrate on") from None
    logits = frozen_logits(ckpt, dataset, log=log)
    calibration = choose_calibration(logits, positives, log=log)
    out = apply_calibration(ckpt, calibration)
    out["data"] = {"train_ann": str(dataset.path), "train_images": str(dataset.images_dir.resolve())}
    return out


def zero_shot_teacher(arch: str, *, pretrained=None, weights=None, categories, prompts=None, calibrate=None,
                      calibrate_images=None, log=print) -> dict:
    """spml-export --zero-shot: the zero-shot teacher of `arch` (open_clip/NAME; a bare NAME is taken as one) for
    the CATS file `categories` under the templates of `prompts` (a file; None: the default ensemble), calibrated
    on the single positives of `calibrate` if given."""
    from spml.train.clip_models import PREFIX, is_clip, read_prompts

    arch = arch if is_clip(arch) else PREFIX + arch
    templates = read_prompts(prompts)
    ckpt = zero_shot_checkpoint(arch, read_categories(categories), pretrained=pretrained, weights=weights,
                                prompts=templates, prompts_file=prompts)
    log(f"zero-shot head of {len(ckpt['categories'])} categories from {len(templates)} prompt templates")
    return ckpt if calibrate is None else calibrate_checkpoint(ckpt, calibrate, calibrate_images, log=log)
