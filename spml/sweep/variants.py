"""The student variants of spml-sweep, by name: a base, then options joined by '+'.

    soft  init-soft  rounds:3  init-soft+tta  rounds:3+strong+epochs:16  init-soft+temp:0.5

A base says where the student's labels come from and where it starts; an option adds noise to its training
(Noisy Student's) or to the labels (test-time augmentation, sharpening). `rounds:K` is K rounds of init-soft:
round k's student labels the images for round k+1 and is its starting point, the options kept on every round.
Torch-free, so spml-sweep --help and its validation need no torch."""

from __future__ import annotations

from dataclasses import dataclass, field

BASES = {
    "soft": "student fits the teacher's probabilities (observed positive at 1)",
    "band": "ignore band: unknown between tau_low and the best tau, masked in the student's loss",
    "prior": "per-class thresholds matching priors estimated from the single positives",
    "init": "student starts from the teacher's weights",
    "init-soft": "student starts from the teacher's weights and fits its probabilities",
    "round2": "a second round: the soft student becomes the teacher of a new soft student",
    "rounds:K": "K rounds of init-soft: each round's student labels the next round and is its start",
    "teacher": "no student: the teacher itself, trained with the options (e.g. as many epochs as teacher + student)",
    "full": "no student: the full-label model, trained with the options (needs --gt-ann)",
}
OPTIONS = {
    "strong": "the student trains under --augment strong (crop, TrivialAugment, mixup/cutmix)",
    "mix": "the student's batches mixed (mixup/cutmix), flips as usual",
    "tta": "labels from --tta flip",
    "tta-crop": "labels from --tta flip-crop",
    "temp:T": "soft targets sharpened at temperature T",
    "epochs:N": "the student trains N epochs",
    "dropout:P": "dropout P on the student's head input",
    "size:N": "the student trains (and is evaluated) at N px",
    "ens:K": "labels from an ensemble of K teachers (seeds seed, seed + 1, ...), their probabilities averaged",
    "tloss:NAME": "the variant's teacher(s) trained with loss NAME instead of the sweep's",
    "tepochs:N": "the variant's teacher(s) trained N epochs",
}


@dataclass(frozen=True)
class Variant:
    name: str
    base: str  # a key of BASES, rounds:K as "rounds"
    rounds: int = 1
    tta: str = "none"
    ensemble: int = 1  # teachers averaged for the first round's labels
    train: dict = field(default_factory=dict)  # TrainConfig options of the student
    teacher_loss: str | None = None  # None: the sweep's teacher
    teacher_epochs: int | None = None

    @property
    def soft(self) -> bool:
        return self.base in ("soft", "init-soft", "round2", "rounds")

    @property
    def init(self) -> bool:
        return self.base in ("init", "init-soft", "rounds")

    @property
    def file_name(self) -> str:
        """The variant's name as a file name part: ':' and '+' spelt out portably."""
        return self.name.replace(":", "").replace("+", "_")

    def description(self) -> str:
        parts = [BASES["rounds:K"].replace("K rounds", f"{self.rounds} rounds") if self.base == "rounds" else BASES[self.base]]
        for option in self.name.split("+")[1:]:
            key, _, value = option.partition(":")
            text = OPTIONS[f"{key}:{PLACEHOLDER[key]}" if value else key]
            text = text.replace(f" {PLACEHOLDER[key]}", f" {value}") if value else text
            parts.append(text.replace("the student", "it") if self.base in ("teacher", "full") else text)
        return "; ".join(parts)


PLACEHOLDER = {"temp": "T", "epochs": "N", "dropout": "P", "size": "N", "ens": "K", "tloss": "NAME", "tepochs": "N"}


def parse_variant(name: str) -> Variant:
    """The Variant named `name`; ValueError saying what is valid otherwise."""
    base, *options = name.strip().split("+")
    rounds = 1
    if base.startswith("rounds:"):
        rounds = _number(base, int, 1)
        base = "rounds"
    elif base not in BASES or base == "rounds:K":
        raise ValueError(f"unknown variant {name!r}: the base must be one of {', '.join(BASES)}")
    tta, train, ensemble, teacher = "none", {}, 1, {}
    for option in options:
        key, _, value = option.partition(":")
        if key in ("strong", "mix", "tta", "tta-crop") and not value:
            if key == "strong":
                train["augment"] = "strong"
            elif key == "mix":
                train["mix_prob"] = 1.0
            else:
                tta = "flip" if key == "tta" else "flip-crop"
        elif key == "temp" and value:
            train["soft_temperature"] = _number(option, float, 1e-6)
        elif key == "epochs" and value:
            train["epochs"] = _number(option, int, 1)
        elif key == "dropout" and value:
            train["dropout"] = _number(option, float, 0.0)
        elif key == "size" and value:
            train["image_size"] = _number(option, int, 1)
        elif key == "ens" and value:
            ensemble = _number(option, int, 1)
        elif key == "tloss" and value:
            from spml.train.loss_names import ALL_LOSS_NAMES

            if value not in ALL_LOSS_NAMES:
                raise ValueError(f"{option!r}: unknown loss; valid: {', '.join(ALL_LOSS_NAMES)}")
            teacher["teacher_loss"] = value
        elif key == "tepochs" and value:
            teacher["teacher_epochs"] = _number(option, int, 1)
        else:
            raise ValueError(f"unknown option {option!r} in variant {name!r}; valid: {', '.join(OPTIONS)}")
    if base in ("teacher", "full") and (tta != "none" or ensemble > 1 or teacher):
        raise ValueError(f"variant {name!r}: {base} trains on the given labels, not on a teacher's")
    if "soft_temperature" in train and base not in ("soft", "init-soft", "round2", "rounds"):
        raise ValueError(f"variant {name!r}: temp:T sharpens soft targets, and {base} has none")
    return Variant(name.strip(), base, rounds, tta, ensemble, train, **teacher)


def _number(text: str, kind, low):
    try:
        value = kind(text.split(":", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"{text!r}: expected a number after ':'") from None
    if value < low:
        raise ValueError(f"{text!r}: must be at least {low:g}")
    return value
