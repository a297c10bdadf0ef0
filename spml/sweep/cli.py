"""spml-sweep: the click command over `spml.sweep.run.run_sweep`."""

from __future__ import annotations

import click

from spml.sweep.run import VARIANTS
from spml.train.presets import LR_SCHEDULES, PRESETS


def _names(text: str) -> tuple:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else ()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ann", type=click.Path(dir_okay=False), required=True, help="Single-positive training labels.")
@click.option("--images", type=click.Path(file_okay=False), default=None)
@click.option("--val-ann", type=click.Path(dir_okay=False), required=True, help="Fully labelled validation set.")
@click.option("--val-images", type=click.Path(file_okay=False), default=None)
@click.option("--test-ann", type=click.Path(dir_okay=False), required=True, help="Fully labelled test set.")
@click.option("--test-images", type=click.Path(file_okay=False), default=None)
@click.option("--gt-ann", type=click.Path(dir_okay=False), default=None,
              help="Full labels of the training images: pseudo-label precision/recall and the full-label line.")
@click.option("--tau", "taus", type=click.FloatRange(0, 1, max_open=True), multiple=True,
              help="Thresholds to sweep. Default: 0.55 0.65 0.75 0.85 0.95.")
@click.option("--teacher-loss", default="em", show_default=True)
@click.option("--losses", default="", help="Extra teacher losses for the table of all losses, comma-separated, or 'all'.")
@click.option("--variants", default="", help=f"Student variants at the best tau, comma-separated: {', '.join(VARIANTS)}.")
@click.option("--variant-tau", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="tau of the variants. Default: the hard-threshold student's best by validation mAP.")
@click.option("--tau-low", type=float, default=0.5, show_default=True, help="band variant: below it, confident negatives.")
@click.option("--expected-positives", type=float, default=2.9, show_default=True, help="prior variant: positives per image.")
@click.option("--arch", default=None)
@click.option("--image-size", type=int, default=None)
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--pretrained/--no-pretrained", default=None)
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="Every model: spml-train's --preset (the reference code's settings for the dataset). Default: none.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None,
              help="Every model: spml-train's --lr-schedule. Default: cosine (--preset: constant).")
@click.option("--head-lr-mult", type=float, default=None,
              help="Every model: spml-train's --head-lr-mult. Default: 1 (--preset with ll-*: 10).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Report folder.")
def main(ann, images, val_ann, val_images, test_ann, test_images, gt_ann, taus, teacher_loss, losses, variants, variant_tau, tau_low,
         expected_positives, arch, image_size, epochs, batch_size, lr, pretrained, preset, lr_schedule, head_lr_mult, seed,
         device, out):
    """The seed paper's tau study: AN and EM teachers, a student per tau, test mAP and positives per image
    against tau (Figure 1), written to OUT as report.json, report.md and two PNG plots. Artifacts in OUT are
    reused, so an interrupted sweep continues.

    \b
      spml-sweep --ann sp.json --val-ann val.json --test-ann test.json --gt-ann train.json --out report/
    """
    from spml.sweep.run import SweepConfig, run_sweep
    from spml.train.trainer import ALL_LOSSES

    train = {k: v for k, v in dict(arch=arch, image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
                                    pretrained=pretrained, preset=preset, lr_schedule=lr_schedule, head_lr_mult=head_lr_mult,
                                    seed=seed, device=device).items() if v is not None}
    extra = tuple(n for n in ALL_LOSSES if n not in ("bce", "bce-ls")) if losses == "all" else _names(losses)
    cfg = SweepConfig(ann=ann, images=images, val_ann=val_ann, val_images=val_images, test_ann=test_ann,
                      test_images=test_images, gt_ann=gt_ann, taus=tuple(taus) or SweepConfig.taus,
                      teacher_loss=teacher_loss, losses=extra, variants=_names(variants), variant_tau=variant_tau, tau_low=tau_low,
                      expected_positives=expected_positives, train=train, out=out)
    report = run_sweep(cfg, log=click.echo)
    click.echo(f"wrote {out}/report.json, report.md, fig1a_map_vs_tau.png, fig1b_positives_vs_tau.png")
    best = max(report["students"], key=lambda s: s["map"])
    click.echo(f"teachers {', '.join(f'{k} {v:.2f}' for k, v in report['teachers'].items())}; best student "
               f"tau {best['tau']:g}: {best['map']:.2f}")
