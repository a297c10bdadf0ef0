"""The single-positive protocol of Cole et al. 2021: one positive label per image, drawn uniformly at random."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing this module stays cheap: spml-label and spml-sweep read the constant below for --help
    from spml.data.coco import CocoDataset

# Positives per image in COCO 2014 (Cole et al. 2021's expected_num_pos): the default of every setting that needs
# it (spml-label --class-prior auto, the sweep's prior variant, the COCO preset of the EPR and ROLE losses): the one
# place it is written.
COCO_EXPECTED_POSITIVES = 2.9


def single_positive(dataset: CocoDataset, seed: int = 0) -> tuple[dict, int]:
    """A COCO dict with the same image and category records and one annotation per image: an annotation of one
    of the image's positive categories, each category equally likely. Images with no positive are dropped.
    Returns (coco_dict, number of images dropped)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    col = dataset.column_of()
    anns_by_image: dict[int, list[dict]] = {}
    for a in dataset.raw["annotations"]:
        anns_by_image.setdefault(a["image_id"], []).append(a)
    images, annotations = [], []
    for row, im in enumerate(dataset.images):
        cats = np.flatnonzero(dataset.positives[row])
        if cats.size == 0:
            continue
        j = int(rng.choice(cats))
        first = next(a for a in anns_by_image[im["id"]] if col[a["category_id"]] == j)
        images.append(im)
        annotations.append({**first, "id": len(annotations) + 1})
    info = dict(dataset.raw.get("info") or {})
    info.update({
        "description": f"single positive labels of {dataset.path} (seed {seed})",
        "images_dir": str(dataset.images_dir.resolve()),
        "single_positive_seed": seed,
    })
    out = {k: v for k, v in dataset.raw.items() if k not in ("images", "annotations", "categories", "info")}
    out.update(info=info, images=images, categories=dataset.categories, annotations=annotations)
    return out, len(dataset.images) - len(images)
