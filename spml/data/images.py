"""Image decoding and the one preprocessing used by train, label and eval, on the torch and onnxruntime paths
alike (numpy and Pillow only, so the labeler never needs torch)."""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the resampling filters a model's preprocessing may name (timm's pretrained configs use bilinear and bicubic)
INTERPOLATIONS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                  "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


class ImageError(Exception):
    """An image that cannot be used; the message is the reason written to the failures list."""


def image_path(images_dir: Path, file_name: str, allow_outside: bool = False) -> Path:
    """The file an annotation's `file_name` names, refusing one that escapes `images_dir` (`../`, an absolute
    path, a symlink pointing out) unless the user allowed it."""
    path = Path(images_dir) / file_name
    if allow_outside:
        return path
    root = Path(images_dir).resolve()
    try:
        real = path.resolve()
    except (OSError, ValueError) as e:  # a NUL byte, a name the file system cannot encode, a link loop
        raise ImageError(f"cannot open {str(path)!r}: {_reason(e)}") from None
    if real != root and root not in real.parents:
        raise ImageError(f"file_name escapes the images folder: {file_name}")
    return path


def _reason(e: Exception) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _not_regular(mode: int) -> str | None:
    """What a file that is not a regular file is ('a FIFO', ...), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike):
    """`path` opened for binary reading if it is a regular file (after links). A FIFO, device or socket named
    like an image is refused before it is opened: its open() or read() may block for good or never end. Any path
    the OS cannot take (a NUL byte, a name too long, a link loop, no permission) is an ImageError with the reason,
    like an image that cannot be decoded."""
    try:
        kind = _not_regular(os.stat(path).st_mode)
        if kind is not None:
            raise ImageError(f"not an image file ({kind}): {path}")
        return open(path, "rb", opener=_open_nonblocking)
    except FileNotFoundError:
        raise ImageError(f"missing file: {path}") from None  # the path tried, so a wrong --images shows at once
    except (OSError, ValueError) as e:  # ValueError: a NUL byte, a name the file system cannot encode
        raise ImageError(f"cannot open {str(path)!r}: {_reason(e)}") from None


def _open_nonblocking(path, flags: int) -> int:
    """open()'s opener: should a FIFO take the file's place after the stat, opening it does not wait for a
    writer, and it is refused."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    kind = _not_regular(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise ImageError(f"not an image file ({kind}): {path}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)  # reads of a regular file as usual (some network file systems heed the flag)
    return fd


def decode_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image as upright 8-bit RGB: EXIF rotation applied, 16-bit scaled (not clipped) to 8 bits,
    CMYK, palette, grayscale and alpha converted."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # "I" holds 16-bit PNGs too; treat anything above 8-bit range as 16-bit
        scale = 257.0 if arr.size and arr.max() > 255 or img.mode.startswith("I;16") else 1.0
        arr = np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_image(path: str | os.PathLike, target: int | None = None) -> Image.Image:
    """Open and decode an image file to upright RGB. With `target`, a JPEG is decoded at a reduced scale
    (libjpeg's DCT scaling) no smaller than target x target, which is several times faster for big photos."""
    f = open_regular(path)
    try:
        with f, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as img:
                if target is not None and img.format == "JPEG":
                    img.draft("RGB", (target, target))
                img.load()
                return decode_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image too large: {path} ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot decode {path} (not an image format Pillow reads)") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors for corrupt, truncated, empty files
        raise ImageError(f"cannot decode {path} ({e})") from None


# How an image becomes size x size: squash (the reference codebases' square resize, no crop, spml's own), or
# open_clip's other two, which keep the aspect ratio: shortest (the short side to size, then a centre crop: OpenAI
# CLIP's) and longest (the long side to size, then centred on a padded square)
RESIZE_MODES = ("squash", "shortest", "longest")


@dataclass(frozen=True)
class Preprocess:
    """Resize to size x size with the model's resampling filter and resize mode (squash: the whole image, no
    crop), and normalise; CHW float32."""

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"  # a key of INTERPOLATIONS; timm models bring their own (mostly bicubic)
    resize_mode: str = "squash"  # one of RESIZE_MODES; open_clip models bring their own (mostly shortest)
    fill: int = 0  # longest: the padding's grey level (open_clip's fill_color)
    _scale: np.ndarray = field(init=False, repr=False, compare=False)
    _shift: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {self.resize_mode!r}; valid: {', '.join(RESIZE_MODES)}")
        std = np.asarray(self.std, dtype=np.float32)
        object.__setattr__(self, "_scale", (1.0 / (255.0 * std)).reshape(3, 1, 1))
        object.__setattr__(self, "_shift", (np.asarray(self.mean, dtype=np.float32) / std).reshape(3, 1, 1))

    def resize(self, img: Image.Image) -> np.ndarray:
        """HWC uint8 at the model's size."""
        if img.size != (self.size, self.size):
            if self.resize_mode == "shortest":
                img = _centre_crop(_resize_short_side(img, self.size, self.interpolation), self.size)
            elif self.resize_mode == "longest":
                img = _pad_to_square(_resize_long_side(img, self.size, self.interpolation), self.size, self.fill)
            else:
                img = img.resize((self.size, self.size), INTERPOLATIONS[self.interpolation])
        return np.asarray(img, dtype=np.uint8)

    def normalize(self, hwc_uint8: np.ndarray) -> np.ndarray:
        """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 normalised; works on one image or a batch."""
        # transpose the bytes first and scale in place: 3-4x faster than casting the strided view, and this
        # runs on the labeler's main thread between inferences
        chw = np.ascontiguousarray(np.moveaxis(hwc_uint8, -1, -3)).astype(np.float32)
        chw *= self._scale
        chw -= self._shift
        return chw

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        return self.normalize(self.resize(load_image(path, self.size)))

    def to_dict(self) -> dict:
        d = {"image_size": self.size, "mean": list(self.mean), "std": list(self.std),
             "interpolation": self.interpolation}
        if self.resize_mode != "squash":  # only then: the dict (and the feature cache keyed on it) stays as it was
            d.update(resize_mode=self.resize_mode, fill=self.fill)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        """The inverse of to_dict; checkpoints written before interpolation was recorded resized bilinearly, and
        before the resize mode was, squashed."""
        return cls(int(d["image_size"]), tuple(d["mean"]), tuple(d["std"]), d.get("interpolation", "bilinear"),
                   d.get("resize_mode", "squash"), int(d.get("fill", 0)))


def _resize_short_side(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """torchvision's Resize(size): the short side to `size`, the long one in proportion (truncated, as there)."""
    w, h = img.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return img if new == img.size else img.resize(new, INTERPOLATIONS[interpolation])


def _centre_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's CenterCrop(size) of an image at least `size` on each side."""
    w, h = img.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _resize_long_side(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """open_clip's ResizeKeepRatio(longest=1): the long side to `size`, the short one in proportion."""
    w, h = img.size
    ratio = max(w, h) / size
    new = (max(1, int(round(w / ratio))), max(1, int(round(h / ratio))))
    return img if new == img.size else img.resize(new, INTERPOLATIONS[interpolation])


def _pad_to_square(img: Image.Image, size: int, fill: int) -> Image.Image:
    """open_clip's CenterCropOrPad: the image centred on a size x size canvas of grey level `fill`."""
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    w, h = img.size
    canvas.paste(img, ((size - w) // 2, (size - h) // 2))
    return canvas
