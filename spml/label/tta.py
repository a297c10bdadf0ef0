"""spml-label --tta: the views of each image scored in the same onnxruntime run, and how their probabilities
become the image's scores. numpy-free (the command checks --tta before any heavy import)."""

from __future__ import annotations

from spml.errors import SpmlError

# flip and flip-crop: the mean of the views' probabilities
TTA_VIEWS = {"none": 1, "flip": 2, "flip-crop": 4}
TTA_CROP = 0.875  # flip-crop's second pair of views: the central 87.5% of the image (each side), resized
# tiles:N, AEVLP's global and local views (Tran et al., ICCV 2025): the whole image and an N x N grid of tiles,
# each resized to the model's input; a category's score is the mean of the whole image's probability and the
# largest of the tiles', so an object small in the whole image counts at the scale of its tile. (AEVLP falls back
# to the smallest tile's when the largest is below the image's observed positive's score; a labeler of
# unannotated folders has no observed positive, so the gate is left out.)
TILES = "tiles:"
MAX_TILE_GRID = 8
TTA_HELP = "none, flip, flip-crop, tiles:N (N 1..8)"


def tta_views(tta: str) -> int:
    """How many views --tta scores per image; SpmlError naming the valid ones otherwise."""
    if tta in TTA_VIEWS:
        return TTA_VIEWS[tta]
    grid = tta[len(TILES):] if isinstance(tta, str) and tta.startswith(TILES) else ""
    if grid.isdigit() and 1 <= int(grid) <= MAX_TILE_GRID:
        return int(grid) ** 2 + 1
    raise SpmlError(f"unknown --tta {tta!r}; valid: {TTA_HELP}") from None


def tile_grid(tta: str) -> int:
    """N of a valid --tta tiles:N; 0 for the other augmentations."""
    return int(tta[len(TILES):]) if tta.startswith(TILES) else 0


def tile_boxes(width: int, height: int, grid: int) -> list[tuple[int, int, int, int]]:
    """The (left, upper, right, lower) boxes of a grid x grid tiling, row by row, as AEVLP cuts them: tiles of
    width // grid by height // grid pixels from the top left (the remainder at the right and bottom edges left out)."""
    w, h = max(1, width // grid), max(1, height // grid)
    return [(x * w, y * h, (x + 1) * w, (y + 1) * h) for y in range(grid) for x in range(grid)]


def aggregate_views(probs, tta: str):
    """(B, L) scores of (B, V, L) view probabilities: the mean of the views, or with tiles:N the mean of the
    whole image's (view 0) and the largest tile's."""
    if tta.startswith(TILES):
        return (probs[:, 0] + probs[:, 1:].max(axis=1)) / 2
    return probs.mean(axis=1)
