"""What spml-label labels: a COCO file, a plain folder of images, or a list of them (.txt, .jsonl, .csv)."""

from __future__ import annotations

from spml.errors import SpmlError


def load_inputs(ann: str | None, images: str | None, labeler):
    """The dataset to label and a few words naming it.

    --ann FILE.json: a COCO file, whose positives are the observed labels. --ann FILE.txt|.jsonl|.csv: an image
    list (paths relative to --images, else to the list's folder). --images DIR alone: every image under DIR.
    Neither: the training annotations recorded in the model. Lists and folders get the model's categories."""
    from spml.data.coco import load_coco
    from spml.data.image_list import is_image_list, load_image_folder, load_image_list

    categories = labeler.info.categories
    if ann is None and images is not None:
        return load_image_folder(images, categories, labeler.threads), f"the images under {images}"
    if ann is None:
        ann = labeler.info.train_ann
        if not ann:
            raise SpmlError(f"{labeler.model_path} records no training annotations; pass --ann or --images") from None
        images = images or labeler.info.train_images
    if is_image_list(ann):
        return load_image_list(ann, categories, images, labeler.threads), f"the list {ann}"
    return load_coco(ann, images), str(ann)
