"""spml-sweep: the click command over `spml.sweep.run.run_sweep`."""

from __future__ import annotations

import click

from spml.cli_util import command

from spml.train.loss_names import ALL_LOSS_NAMES, LR_SCHEDULE_NAMES, PRESET_NAMES

from spml.sweep.variants import BASES, OPTIONS, parse_variant

VARIANT_NAMES = tuple(BASES)


def _names(text: str) -> tuple:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else ()


def _variants(ctx, param, value):
    names = _names(value)
    for name in names:
        try:
            parse_variant(name)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return names


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
@click.option("--tau", "taus", type=click.FloatRange(0, 1, max_open=True), multiple=True,
              show_default="0.55 0.65 0.75 0.85 0.95", help="Thresholds to sweep (repeat the option).")
@click.option("--teacher-loss", type=click.Choice(ALL_LOSS_NAMES), default="em", show_default=True,
              help="Loss of the teacher whose pseudo labels train the students.")
@click.option("--losses", default="", show_default="none", help="Extra teacher losses for the table of all losses, comma-separated, or 'all'.")
@click.option("--variants", default="", show_default="none", callback=_variants,
              help=f"Student variants at the best tau, comma-separated; each a base ({', '.join(VARIANT_NAMES)}) with "
                   f"options joined by '+' ({', '.join(OPTIONS)}), e.g. rounds:3+tta.")
@click.option("--variant-tau", type=click.FloatRange(0, 1, max_open=True), default=None,
              show_default="the hard-threshold student's best by validation mAP", help="tau of the variants.")
@click.option("--tau-low", type=float, default=0.5, show_default=True, help="band variant: below it, confident negatives.")
@click.option("--expected-positives", type=float, default=2.9, show_default=True, help="prior variant: positives per image.")
@click.option("--arch", default=None, show_default="spml-train's", help="Arch of every model (spml-train --arch).")
@click.option("--image-size", type=int, default=None, show_default="spml-train's", help="Input size of every model.")
@click.option("--epochs", type=int, default=None, show_default="spml-train's", help="Epochs of every model.")
@click.option("--batch-size", type=int, default=None, show_default="spml-train's", help="Batch size of every model.")
@click.option("--lr", type=float, default=None, show_default="spml-train's", help="Learning rate of every model.")
@click.option("--pretrained/--no-pretrained", default=None, show_default="spml-train's",
              help="ImageNet weights for every model.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, show_default="none",
              help="Every model starts from this local state dict (spml-train --weights), e.g. $(spml-data backbone).")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None, show_default="none",
              help="Every model: spml-train's --preset (the reference code's settings for the dataset).")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULE_NAMES), default=None, show_default="cosine; --preset: constant",
              help="Every model: spml-train's --lr-schedule.")
@click.option("--head-lr-mult", type=float, default=None, show_default="1; --preset with ll-*: 10",
              help="Every model: spml-train's --head-lr-mult.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every model.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: CUDA when available.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Report folder.")
def main(ann, images, val_ann, val_images, test_ann, test_images, gt_ann, taus, teacher_loss, losses, variants, variant_tau, tau_low,
         expected_positives, arch, image_size, epochs, batch_size, lr, pretrained, weights, preset, lr_schedule, head_lr_mult,
         seed, device, out):
    """The seed paper's tau study: AN and EM teachers, a student per tau, test mAP and positives per image
    against tau (Figure 1), written to OUT as report.json, report.md and two PNG plots. Artifacts in OUT are
    reused, so an interrupted sweep continues.

    \b
      spml-sweep --ann sp.json --val-ann val.json --test-ann test.json --gt-ann train.json --out report/
    """
    from spml.sweep.run import SweepConfig, run_sweep
    from spml.train.trainer import ALL_LOSSES

    train = {k: v for k, v in dict(arch=arch, image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
                                    pretrained=pretrained, weights=weights, preset=preset, lr_schedule=lr_schedule, head_lr_mult=head_lr_mult,
                                    seed=seed, device=device).items() if v is not None}
    extra = tuple(n for n in ALL_LOSSES if n not in ("bce", "bce-ls")) if losses == "all" else _names(losses)
    cfg = SweepConfig(ann=ann, images=images, val_ann=val_ann, val_images=val_images, test_ann=test_ann,
                      test_images=test_images, gt_ann=gt_ann, taus=tuple(taus) or SweepConfig.taus,
                      teacher_loss=teacher_loss, losses=extra, variants=variants, variant_tau=variant_tau, tau_low=tau_low,
                      expected_positives=expected_positives, train=train, out=out)
    report = run_sweep(cfg, log=click.echo)
    click.echo(f"wrote {out}/report.json, report.md, fig1a_map_vs_tau.png, fig1b_positives_vs_tau.png")
    best = max(report["students"], key=lambda s: s["map"])
    click.echo(f"teachers {', '.join(f'{k} {v:.2f}' for k, v in report['teachers'].items())}; best student "
               f"tau {best['tau']:g}: {best['map']:.2f}")
