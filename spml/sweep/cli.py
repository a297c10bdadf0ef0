"""spml-sweep: the click command over `spml.sweep.run.run_sweep`."""

from __future__ import annotations

import click

from spml.cli_util import command, several
from spml.data.protocol import COCO_EXPECTED_POSITIVES
from spml.sweep.variants import BASES, OPTIONS, parse_variant
from spml.train.loss_names import ALL_LOSS_NAMES
from spml.train.options import model_options

VARIANT_NAMES = tuple(BASES)


class VariantName(click.ParamType):
    """A student variant's name (spml.sweep.variants), checked before anything trains."""

    name = "variant"

    def convert(self, value, param, ctx):
        try:
            parse_variant(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)
        return value


@command()
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.option("--ann", type=click.Path(dir_okay=False), required=True, help="Single-positive training labels.")
@click.option("--images", type=click.Path(file_okay=False), default=None, show_default="recorded in --ann, else its folder",
              help="Images folder of --ann.")
@click.option("--val-ann", type=click.Path(dir_okay=False), required=True, help="Fully labelled validation set.")
@click.option("--val-images", type=click.Path(file_okay=False), default=None,
              show_default="recorded in --val-ann, else its folder", help="Images folder of --val-ann.")
@click.option("--test-ann", type=click.Path(dir_okay=False), required=True, help="Fully labelled test set.")
@click.option("--test-images", type=click.Path(file_okay=False), default=None,
              show_default="recorded in --test-ann, else its folder", help="Images folder of --test-ann.")
@click.option("--gt-ann", type=click.Path(dir_okay=False), default=None, show_default="none",
              help="Full labels of the training images: pseudo-label precision/recall and the full-label line.")
@several("--tau", "taus", type=click.FloatRange(0, 1, max_open=True), show_default="0.55 0.65 0.75 0.85 0.95",
         help="Thresholds to sweep (repeat the option or separate by commas).")
@click.option("--teacher-loss", type=click.Choice(ALL_LOSS_NAMES), default="em", show_default=True,
              help="Loss of the teacher whose pseudo labels train the students.")
@several("--losses", type=click.Choice(ALL_LOSS_NAMES + ("all",)), metavar="LOSS", show_default="none",
         help="Extra teacher losses for the table of all losses, or 'all' (repeat the option or separate by commas).")
@several("--variants", type=VariantName(), show_default="none",
         help=f"Student variants at the best tau (repeat the option or separate by commas); each a base "
              f"({', '.join(VARIANT_NAMES)}) with options joined by '+' ({', '.join(OPTIONS)}), e.g. rounds:3+tta.")
@click.option("--variant-tau", type=click.FloatRange(0, 1, max_open=True), default=None,
              show_default="the hard-threshold student's best by validation mAP", help="tau of the variants.")
@click.option("--tau-low", type=float, default=0.5, show_default=True, help="band variant: below it, confident negatives.")
@click.option("--expected-positives", type=float, default=COCO_EXPECTED_POSITIVES, show_default=True,
              help="prior variant: positives per image.")
@model_options
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Report folder.")
def main(*, ann, images, val_ann, val_images, test_ann, test_images, gt_ann, taus, teacher_loss, losses, variants,
         variant_tau, tau_low, expected_positives, out, **model):
    """The seed paper's tau study: AN and EM teachers, a student per tau, test mAP and positives per image
    against tau (Figure 1), written to OUT as report.json, report.md and two PNG plots. Artifacts in OUT are
    reused, so an interrupted sweep continues. The model options (--arch ... --device) are spml-train's, for
    every model the sweep trains.

    \b
      spml-sweep --ann sp.json --val-ann val.json --test-ann test.json --gt-ann train.json --out report/
    """
    from spml.sweep.run import SweepConfig, run_sweep
    from spml.train.trainer import ALL_LOSSES

    train = {k: v for k, v in model.items() if v is not None}
    extra = tuple(n for n in ALL_LOSSES if n not in ("bce", "bce-ls")) if "all" in losses else losses
    cfg = SweepConfig(ann=ann, images=images, val_ann=val_ann, val_images=val_images, test_ann=test_ann,
                      test_images=test_images, gt_ann=gt_ann, taus=tuple(taus) or SweepConfig.taus,
                      teacher_loss=teacher_loss, losses=extra, variants=variants, variant_tau=variant_tau, tau_low=tau_low,
                      expected_positives=expected_positives, train=train, out=out)
    report = run_sweep(cfg, log=click.echo)
    click.echo(f"wrote {out}/report.json, report.md, fig1a_map_vs_tau.png, fig1b_positives_vs_tau.png")
    best = max(report["students"], key=lambda s: s["map"])
    click.echo(f"teachers {', '.join(f'{k} {v:.2f}' for k, v in report['teachers'].items())}; best student "
               f"tau {best['tau']:g}: {best['map']:.2f}")


if __name__ == "__main__":
    main()
