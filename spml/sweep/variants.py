"""The student variants of spml-sweep, by name: a base, then options joined by '+'.

    soft  init-soft  rounds:3  init-soft+tta  rounds:3+strong+epochs:16  init-soft+temp:0.5
    review:1:uncertainty:pair+staged  review:1:uncertainty:pair+staged+rounds:2

A base says where the student's labels come from and where it starts; an option adds noise to its training
(Noisy Student's) or to the labels (test-time augmentation, sharpening). `rounds:K` is K rounds of init-soft:
round k's student labels the images for round k+1 and is its starting point, the options kept on every round.
After a review base, the option `rounds:R` is something else, and only there: the review's budget asked in R
rounds of questions (the base comes first, so `rounds:K` as a base and `+rounds:R` as an option never meet).
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
    "review:B[:strategy[:unit]]": "a person answers B questions per image (simulated from --gt-ann; strategy of "
                                  "spml-review select, default uncertainty; unit pair or image), the EM teacher "
                                  "retrained on the single positives and the answers, then init-soft from it",
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
    "fix": "review: the answers correct the first teacher's pseudo labels (kept as verified) instead of retraining it",
    "cal": "review: fix, and the teacher's probabilities calibrated on the answers (Platt scaling per category)",
    "staged": "review: cal, half the budget asked at random first (the calibration's), the rest by the strategy "
              "on the calibrated probabilities",
    "ipw": "review, retrained, strategy weighted: each answer's loss in the retrained teacher weighted by 1 / the "
           "weight it was sampled with (inverse probability weighting: undoes the selection)",
    "rounds:R": "review only (as a base, rounds:K is K rounds of init-soft): the budget asked in R rounds, each "
                "round's questions chosen by the model updated on every answer so far (fix, cal, staged: round k's "
                "student, init-soft from round k-1's, its calibration fitted on round k's own fresh answers; "
                "retrain: the teacher retrained on them); every round's training counts in the epochs",
}


@dataclass(frozen=True)
class Review:
    """`review:B[:strategy[:unit]]`: B answers per image (a fraction allowed), chosen by spml-review select's
    `strategy` in `unit`s; `fix`: the answers correct the first teacher's labels, else the teacher is retrained."""

    per_image: float
    strategy: str = "uncertainty"
    unit: str = "pair"
    fix: bool = False
    calibrate: bool = False  # cal: fix, with the teacher's probabilities calibrated on the answers
    staged: bool = False  # half at random first, calibrate on it, the strategy's half on calibrated probabilities
    rounds: int = 1  # the budget asked in this many rounds, each on the model updated with the answers so far
    ipw: bool = False  # the retrained teacher weights each answer by 1 / its sampling weight

    def budget(self, images: int) -> int:
        """The number of answers for `images` images, at least one."""
        return max(1, round(self.per_image * images))

    def round_budgets(self, images: int) -> list[int]:
        """The budget split over the rounds, as evenly as whole answers allow (each at least one)."""
        total = self.budget(images)
        if total < self.rounds:
            raise ValueError(f"{total} answers cannot be asked in {self.rounds} rounds")
        return [total * k // self.rounds - total * (k - 1) // self.rounds for k in range(1, self.rounds + 1)]


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
    review: Review | None = None  # base review: the questions asked and what the answers change

    @property
    def soft(self) -> bool:
        return self.base in ("soft", "init-soft", "round2", "rounds", "review")

    @property
    def init(self) -> bool:
        return self.base in ("init", "init-soft", "rounds", "review")

    @property
    def file_name(self) -> str:
        """The variant's name as a file name part: ':' and '+' spelt out portably."""
        return self.name.replace(":", "").replace("+", "_")

    def description(self) -> str:
        parts = [BASES["rounds:K"].replace("K rounds", f"{self.rounds} rounds") if self.base == "rounds" else
                 _review_description(self.review) if self.base == "review" else BASES[self.base]]
        for option in self.name.split("+")[1:]:
            if option in ("fix", "cal", "staged", "ipw") or (self.base == "review" and option.startswith("rounds:")):
                continue  # part of the review's description
            key, _, value = option.partition(":")
            text = OPTIONS[f"{key}:{PLACEHOLDER[key]}" if value else key]
            text = text.replace(f" {PLACEHOLDER[key]}", f" {value}") if value else text
            parts.append(text.replace("the student", "it") if self.base in ("teacher", "full") else text)
        return "; ".join(parts)


PLACEHOLDER = {"temp": "T", "epochs": "N", "dropout": "P", "size": "N", "ens": "K", "tloss": "NAME", "tepochs": "N"}


def _review_description(review: Review) -> str:
    asked = (f"{review.per_image:g} answers per image from a person (simulated from --gt-ann), questions chosen by "
             f"{review.strategy}, {'every category of a chosen image' if review.unit == 'image' else 'pair by pair'}")
    if review.staged:
        asked = (f"{review.per_image:g} answers per image from a person (simulated from --gt-ann): half asked at "
                 f"random, the rest chosen by {review.strategy} on the teacher's probabilities calibrated on the "
                 f"random half, {'every category of a chosen image' if review.unit == 'image' else 'pair by pair'}")
    if review.rounds > 1:
        asked += (f"; in {review.rounds} rounds, each chosen by the model updated on the answers so far ("
                  + ("round k-1's student, init-soft, its probabilities calibrated on round k's fresh answers"
                     if review.calibrate else "round k-1's student, init-soft" if review.fix else
                     "the teacher retrained on them") + ")")
    if review.ipw:
        return asked + ("; the EM teacher retrained on the single positives and the answers, each answer weighted by "
                        "1 / its sampling weight, then init-soft from it")
    if review.calibrate:
        return asked + (f"; the teacher's probabilities calibrated on the {'random half' if review.staged else 'answers'} "
                        "(Platt scaling per category) and corrected by the answers, then init-soft from that teacher")
    if review.fix:
        return asked + "; the answers correct the teacher's pseudo labels, then init-soft from that teacher"
    return asked + "; the EM teacher retrained on the single positives and the answers, then init-soft from it"


def parse_review(base: str, fix: bool = False, calibrate: bool = False, staged: bool = False, *,
                 rounds: int = 1, ipw: bool = False) -> Review:
    """`review:B[:strategy[:unit]]` as a Review; ValueError saying what is valid otherwise."""
    from spml.review.strategies import STRATEGIES

    units = ("pair", "image")  # spml.review.select's UNITS, spelt here: that module imports file readers
    _, *fields = base.split(":")
    if not 1 <= len(fields) <= 3 or not fields[0]:
        raise ValueError(f"{base!r}: expected review:B[:strategy[:unit]], B answers per image (e.g. review:0.5:random:pair)")
    try:
        per_image = float(fields[0])
    except ValueError:
        raise ValueError(f"{base!r}: expected a number of answers per image after 'review:'") from None
    if not 0 < per_image < float("inf"):  # NaN fails too
        raise ValueError(f"{base!r}: B, the answers per image, must be a positive number")
    strategy = fields[1] if len(fields) > 1 else "uncertainty"
    unit = fields[2] if len(fields) > 2 else "pair"
    if strategy not in STRATEGIES:
        raise ValueError(f"{base!r}: unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if unit not in units:
        raise ValueError(f"{base!r}: unknown unit {unit!r}; valid: {', '.join(units)}")
    if ipw and (strategy != "weighted" or fix or calibrate or staged or rounds > 1):
        raise ValueError(f"{base!r}: ipw weights a retrained teacher's answers by their sampling weights: strategy "
                         "weighted, without fix, cal, staged or rounds")
    return Review(per_image, strategy, unit, fix or calibrate or staged, calibrate or staged, staged, rounds, ipw)


def parse_variant(name: str) -> Variant:
    """The Variant named `name`; ValueError saying what is valid otherwise."""
    base, *options = name.strip().split("+")
    rounds, review = 1, None
    if base.startswith("rounds:"):
        rounds = _number(base, int, 1)
        base = "rounds"
    elif base == "review" or base.startswith("review:"):
        asked_in = [o for o in options if o.startswith("rounds:")]
        if len(asked_in) > 1:
            raise ValueError(f"variant {name!r}: rounds:R given {len(asked_in)} times")
        review = parse_review(base, fix="fix" in options, calibrate="cal" in options, staged="staged" in options,
                              rounds=_number(asked_in[0], int, 1) if asked_in else 1, ipw="ipw" in options)
        options = [o for o in options if o not in ("fix", "cal", "staged", "ipw", *asked_in)]
        base = "review"
    elif base not in BASES or base in ("rounds:K", "review:B[:strategy[:unit]]"):
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
        elif key in ("fix", "cal", "staged", "ipw") and not value:
            raise ValueError(f"variant {name!r}: {key} is an option of review:B[:strategy[:unit]] only")
        elif key == "rounds":
            raise ValueError(f"variant {name!r}: +rounds:R is an option of review:B[:strategy[:unit]] only (its "
                             "questions in R rounds); K rounds of init-soft are the base rounds:K")
        else:
            raise ValueError(f"unknown option {option!r} in variant {name!r}; valid: {', '.join(OPTIONS)}")
    if base in ("teacher", "full") and (tta != "none" or ensemble > 1 or teacher):
        raise ValueError(f"variant {name!r}: {base} trains on the given labels, not on a teacher's")
    if "soft_temperature" in train and base not in ("soft", "init-soft", "round2", "rounds", "review"):
        raise ValueError(f"variant {name!r}: temp:T sharpens soft targets, and {base} has none")
    if base == "review" and ensemble > 1:
        raise ValueError(f"variant {name!r}: review asks one teacher's questions; ens:K is not supported with it")
    return Variant(name.strip(), base, rounds, tta, ensemble, train, review=review, **teacher)


def _number(text: str, kind, low):
    try:
        value = kind(text.split(":", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"{text!r}: expected a number after ':'") from None
    if value < low:
        raise ValueError(f"{text!r}: must be at least {low:g}")
    return value
