"""Every training loss in one place: its name, what it is, where its code lives, its hyperparameters (type, default,
help) and the reference code's settings per dataset (`spml-train --preset`). Everything else reads it: the loss
functions and classes take every value from here (they have no defaults of their own), `spml-train --loss-arg`
checks keys against it and its --help lists the defaults from it, `--preset` and spml-sweep take it from here.

Torch-free and numpy-free (the implementations are dotted paths, imported when a loss is built), so
`spml-train --help` answers at once.

Sources of the values (read, not copied); each value is written once, in the tables below:
- EM, EM+APL, and the AN/BCE baselines: Zhou et al. 2022, Correr-Zhou/SPML-AckTheUnknown main.py: per dataset
  the batch and fine-tuning lr of ZHOU_LOOP, alpha (EM_ALPHA), beta and the warm-up (APL); theta
  (neg_proportion) is the same on every dataset (the default). One Adam group, constant learning rate.
- EPR, ROLE, AN-LS, WAN: Cole et al. 2021, elijahcole/single-positive-multi-label. k (expected positives) per
  dataset as in their paper and Zhou et al.'s table: EXPECTED_POSITIVES (the code's lookup has 2.5 for COCO).
  ls_coef: train.py's, on every dataset (the default). Batch and lr were grid-searched there ({8, 16} x
  {1e-2 .. 1e-5}); the presets use Zhou et al.'s per-dataset values, who ran these baselines in the same loop.
  Constant learning rate; ROLE's label estimates get their own lr multiple (lr_mult, not --head-lr-mult).
- LL-R / LL-Ct / LL-Cp: Kim et al. 2022, snucml/LargeLossMatters config.py and train.py: LARGE_LOSS_LOOP (the
  head, the last Linear layer, at lr_mult x the lr), constant learning rate, on every dataset. delta_rel has no
  per-dataset value in its README (only the range 0.1 .. 0.5 %): the default, 0.2 %, everywhere.
- GR: Chen et al. 2024, yan4xi1/GRLoss config.py and train.py: GR_LOOP, constant lr, on every dataset (its 8
  epochs are not set); the loss's own values (beta, alpha, q) are config.py's defaults, the same for every
  dataset there.
Every reference trains 10 epochs end to end from ImageNet weights at 448 px: those are spml's paper defaults
already (spml.train.trainer.resolve_config), so a preset does not set them.
"""

from __future__ import annotations

import importlib
import textwrap
from dataclasses import dataclass, field

from spml.data.protocol import COCO_EXPECTED_POSITIVES
from spml.errors import SpmlError

DATASETS = ("coco", "voc", "nus", "cub")  # --preset's names


@dataclass(frozen=True)
class HParam:
    """One hyperparameter of a loss: its name (the --loss-arg key and the implementation's keyword), its default,
    the type of each value and, for a tuple, how many values it takes (comma-separated on the command line)."""

    name: str
    default: object
    help: str
    type: type = float
    arity: int = 1
    choices: tuple = ()

    def parse(self, text: str):
        """A command line's value -> the hyperparameter's value; SpmlError says what was expected."""
        items = [t.strip() for t in str(text).split(",")]
        try:
            values = tuple(self.type(t) for t in items)
        except ValueError:
            values = ()
        if len(values) != self.arity:
            what = "a number" if self.type is float else "an integer" if self.type is int else "a value"
            expected = f"{self.arity} comma-separated numbers" if self.arity > 1 else what
            raise SpmlError(f"--loss-arg {self.name}: expected {expected}, got {text!r}") from None
        if self.choices and values[0] not in self.choices:
            raise SpmlError(f"--loss-arg {self.name}: expected one of {', '.join(self.choices)}, got {text!r}") from None
        return values if self.arity > 1 else values[0]

    def show(self, value=None) -> str:
        value = self.default if value is None else value
        return ",".join(f"{v:g}" for v in value) if self.arity > 1 else (
            f"{value:g}" if isinstance(value, float) else str(value))


@dataclass(frozen=True)
class Loss:
    """One loss. `impl` is "module:name" of its function (logits, targets, known, **hparams) or, for a stateful
    loss, its class (num_images, num_classes, epochs, **fixed, **hparams). `fixed`: constructor arguments that
    are not hyperparameters (which LL variant). `presets`: dataset -> the values --preset sets, hyperparameters
    and training settings (batch_size, fine_tune_lr, head_lr_mult, lr_schedule) alike."""

    name: str
    description: str
    impl: str
    hparams: tuple = ()
    stateful: bool = False
    fixed: dict = field(default_factory=dict)
    presets: dict = field(default_factory=dict)

    def implementation(self):
        module, _, attr = self.impl.partition(":")
        return getattr(importlib.import_module(module), attr)

    def defaults(self) -> dict:
        return {h.name: h.default for h in self.hparams}

    def hparam(self, key: str) -> HParam:
        for h in self.hparams:
            if h.name == key:
                return h
        raise SpmlError(f"--loss {self.name} has no hyperparameter {key!r}; {self.valid_keys()}") from None

    def valid_keys(self) -> str:
        if not self.hparams:
            return f"{self.name} has no hyperparameters"
        return "valid: " + ", ".join(f"{h.name}={h.show()}" for h in self.hparams)

    def arguments(self, given: dict) -> dict:
        """Every hyperparameter's value: the defaults, overridden by `given` (None keeps the default)."""
        unknown = sorted(set(given) - {h.name for h in self.hparams})
        if unknown:
            raise SpmlError(f"--loss {self.name}: unknown --loss-arg {', '.join(unknown)}; {self.valid_keys()}") from None
        return {**self.defaults(), **{k: v for k, v in given.items() if v is not None}}


# Per-dataset values that differ between datasets; each hyperparameter's default is its COCO value.
EM_ALPHA = {"coco": 0.1, "voc": 0.2, "nus": 0.1, "cub": 0.01}  # Zhou et al. main.py; EM and EM+APL
APL = {"coco": {"beta": 0.9, "warmup_epochs": 5}, "voc": {"beta": 0.02, "warmup_epochs": 5},  # Zhou et al. main.py
       "nus": {"beta": 0.2, "warmup_epochs": 4}, "cub": {"beta": 0.4, "warmup_epochs": 3}}  # theta: the default everywhere
EXPECTED_POSITIVES = {"coco": COCO_EXPECTED_POSITIVES, "voc": 1.5, "nus": 1.9, "cub": 31.4}  # Cole et al.'s paper

# The reference training loops, per dataset.
ZHOU_LOOP = {  # Zhou et al. main.py: batch, lr when fine-tuning, one Adam group, constant lr
    "coco": {"batch_size": 16, "fine_tune_lr": 1e-5}, "voc": {"batch_size": 8, "fine_tune_lr": 1e-5},
    "nus": {"batch_size": 16, "fine_tune_lr": 1e-5}, "cub": {"batch_size": 8, "fine_tune_lr": 1e-4}}
LARGE_LOSS_LOOP = dict.fromkeys(DATASETS, {"batch_size": 16, "fine_tune_lr": 1e-5, "head_lr_mult": 10.0})  # LargeLossMatters
GR_LOOP = dict.fromkeys(DATASETS, {"batch_size": 8, "fine_tune_lr": 1e-5, "head_lr_mult": 10.0})  # yan4xi1/GRLoss config.py
ONE_GROUP_CONSTANT = {"lr_schedule": "constant", "head_lr_mult": 1.0}  # every reference: constant lr; Cole, Zhou: one group


def _presets(loop, **per_dataset) -> dict:
    """dataset -> constant lr, the loop's training settings, and each per-dataset table's value."""
    return {ds: {**ONE_GROUP_CONSTANT, **loop[ds], **{k: table[ds] for k, table in per_dataset.items()}}
            for ds in DATASETS}


LS_COEF = HParam("ls_coef", 0.1, "label smoothing e: positives trained towards 1-e, negatives towards e")
K = HParam("expected_positives", EXPECTED_POSITIVES["coco"], "positives per image expected (k)")
ALPHA = HParam("alpha", EM_ALPHA["coco"], "weight of the entropy term")
DELTA_REL = HParam("delta_rel", 0.002, "per-epoch growth of the share of large-loss labels (a fraction, not a percentage)")
ZHOU = _presets(ZHOU_LOOP)

_ALL = (
    Loss("an", "assume negative: unobserved labels are negatives", "spml.train.losses:assume_negative", presets=ZHOU),
    Loss("an-ls", "assume negative with label smoothing", "spml.train.losses:assume_negative", (LS_COEF,), presets=ZHOU),
    Loss("wan", "weak assume negative: negatives weighted 1/(L-1)", "spml.train.losses:weak_assume_negative",
         presets=ZHOU),
    Loss("epr", "expected positive regularisation", "spml.train.losses:expected_positive_regularization", (K,),
         presets=_presets(ZHOU_LOOP, expected_positives=EXPECTED_POSITIVES)),
    Loss("em", "entropy maximisation on unobserved labels (Zhou et al. 2022)", "spml.train.losses:entropy_maximization",
         (ALPHA,), presets=_presets(ZHOU_LOOP, alpha=EM_ALPHA)),
    Loss("bce", "binary cross-entropy on full or pseudo labels", "spml.train.losses:bce", presets=ZHOU),
    Loss("bce-ls", "binary cross-entropy with label smoothing, the seed paper's student", "spml.train.losses:bce",
         (LS_COEF,), presets=ZHOU),
    Loss("role", "ROLE: trainable label estimates fitted jointly with the predictions (Cole et al. 2021)",
         "spml.train.stateful_losses:RoleLoss",
         (K, HParam("lr_mult", 10.0, "the label estimates' lr as a multiple of --lr (reference train.py)"),
          HParam("init_width", 0.1, "unobserved estimates start uniform in logit(0.5 +- this)"),
          HParam("seed", 0, "seed of the estimates' initialisation", type=int)),
         stateful=True, presets=_presets(ZHOU_LOOP, expected_positives=EXPECTED_POSITIVES)),
    Loss("em-apl", "entropy maximisation + asymmetric pseudo labelling of the lowest-scoring unobserved labels "
         "(Zhou et al. 2022)", "spml.train.stateful_losses:EmAplLoss",
         (ALPHA, HParam("beta", APL["coco"]["beta"], "weight of the pseudo negatives"),
          HParam("theta", 0.9, "final share of unobserved labels made pseudo negatives"),
          HParam("warmup_epochs", APL["coco"]["warmup_epochs"], "epochs before pseudo labelling", type=int)),
         stateful=True, presets={ds: {**ZHOU[ds], "alpha": EM_ALPHA[ds], **APL[ds]} for ds in DATASETS}),
    Loss("ll-r", "assume negative, rejecting the largest-loss unobserved labels of each batch (Kim et al. 2022)",
         "spml.train.stateful_losses:LargeLossLoss", (DELTA_REL,), stateful=True,
         fixed={"mode": "reject", "schedule": "growing"}, presets=_presets(LARGE_LOSS_LOOP)),
    Loss("ll-ct", "assume negative, correcting the largest-loss unobserved labels to positive for that step "
         "(Kim et al. 2022)", "spml.train.stateful_losses:LargeLossLoss", (DELTA_REL,), stateful=True,
         fixed={"mode": "correct", "schedule": "growing"}, presets=_presets(LARGE_LOSS_LOOP)),
    Loss("ll-cp", "assume negative, correcting the largest-loss unobserved labels to positive permanently "
         "(Kim et al. 2022)", "spml.train.stateful_losses:LargeLossLoss",
         (DELTA_REL, HParam("schedule", "fixed", "fixed: delta_rel of each batch from epoch 1 on (the paper's); "
                            "growing: delta_rel x epoch", type=str, choices=("fixed", "growing"))),
         stateful=True, fixed={"mode": "permanent"}, presets=_presets(LARGE_LOSS_LOOP)),
    Loss("gr", "generalized robust loss: soft pseudo labels and reweighting of the unobserved labels "
         "(Chen et al. 2024)", "spml.train.stateful_losses:GeneralizedRobustLoss",
         (HParam("beta", (0.0, 2.0, -2.0, -2.0), "W0,WT,B0,BT: the soft pseudo label k(p) = sigmoid(w p + b), w and b "
                 "going linearly from (W0, B0) in the first epoch towards (WT, BT)", arity=4),
          HParam("alpha", (0.5, 2.0, 0.8, 0.5), "MU0,S0,MUT,ST: the weight v(p) = exp(-(p - mu)^2 / 2 s^2), mu and s "
                 "going linearly from (MU0, S0) to (MUT, ST) in the last epoch", arity=4),
          HParam("q", (0.01, 1.0), "Q2,Q3: q of the robust losses of an unobserved label as positive, "
                 "(1 - p^q2)/q2, and as negative, (1 - (1-p)^q3)/q3", arity=2)),
         stateful=True, presets=_presets(GR_LOOP)),
)
LOSSES = {loss.name: loss for loss in _ALL}

# With --loss unset spml picks em (single positives) or bce (full or pseudo labels; no hyperparameters, the same
# reference loop): em's hyperparameters and presets stand for both until the data decides.
UNSET_LOSS = "em"


def loss_spec(name: str | None) -> Loss:
    spec = LOSSES.get(UNSET_LOSS if name is None else name)
    if spec is None:
        raise SpmlError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}") from None
    return spec


def own_arguments(name: str, loss_args: dict) -> dict:
    """Every hyperparameter of loss `name`, from `loss_args` where there, else the default. Keys of the other
    auto-chosen loss are left out: a run with --loss unset records em's values, and bce, if the data picks it,
    takes none."""
    spec = loss_spec(name)
    keys = {h.name for h in spec.hparams}
    return spec.arguments({k: v for k, v in loss_args.items() if k in keys})


def parse_loss_args(name: str | None, pairs) -> dict:
    """--loss-arg KEY=VALUE tokens of loss `name` (None: the loss spml picks, em or bce) -> {key: value}."""
    spec = loss_spec(name)
    out = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key.strip():
            raise SpmlError(f"--loss-arg {pair!r}: expected KEY=VALUE; {spec.valid_keys()}") from None
        try:
            out[key.strip()] = spec.hparam(key.strip()).parse(text)
        except SpmlError as e:
            unset = " (--loss unset: em's, the loss spml picks for single positives)" if name is None else ""
            raise SpmlError(f"{e}{unset}") from None
    return out


def help_table() -> str:
    """The losses and their hyperparameters with their defaults, for spml-train --help (click's \\b: kept as is)."""
    lines = ["\b", "Losses (--loss) and their hyperparameters (--loss-arg KEY=VALUE; default shown):"]
    for spec in LOSSES.values():
        lines += textwrap.wrap(f"{spec.name}: {spec.description}", 100, initial_indent="  ", subsequent_indent="    ")
        for h in spec.hparams:
            lines += textwrap.wrap(f"{h.name}={h.show()}: {h.help}", 100, initial_indent=" " * 6,
                                   subsequent_indent=" " * 8, break_on_hyphens=False)
    return "\n".join(lines)
