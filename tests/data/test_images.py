"""Decoding: every kind of image must look to the model like its 8-bit RGB twin."""

import numpy as np
import pytest
from PIL import Image

from spml.data.images import ImageError, Preprocess, image_path, load_image


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    base = np.zeros((40, 60, 3), np.uint8)
    base[:, :30] = (200, 30, 60)
    base[:20, 30:] = (20, 180, 90)
    return np.clip(base.astype(int) + rng.integers(0, 10, base.shape), 0, 255).astype(np.uint8)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    out = np.asarray(load_image(tmp_path / "g16.png"))
    np.testing.assert_array_equal(out[..., 0], gray)


def test_cmyk_palette_alpha_grayscale(tmp_path, rgb):
    img = Image.fromarray(rgb)
    img.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    img.convert("RGBA").save(tmp_path / "rgba.png")
    img.convert("P").save(tmp_path / "p.png")
    img.convert("L").save(tmp_path / "l.png")
    for name, tol in [("cmyk.jpg", 12), ("rgba.png", 0), ("p.png", 40), ("l.png", 255)]:
        out = np.asarray(load_image(tmp_path / name))
        assert out.shape == rgb.shape and out.dtype == np.uint8
        if tol < 255:
            assert np.abs(out.astype(int) - rgb).mean() <= tol, name


def test_exif_rotation_is_applied(tmp_path, rgb):
    img = Image.fromarray(rgb)
    # stored rotated, with EXIF orientation 6 (rotate 90 CW to display) telling how to make it upright again
    stored = img.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rot.png", exif=exif)
    out = np.asarray(load_image(tmp_path / "rot.png"))
    np.testing.assert_array_equal(out, rgb)


def test_broken_files_raise_image_error(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    for name in ("empty.jpg", "junk.jpg", "missing.jpg"):
        with pytest.raises(ImageError):
            load_image(tmp_path / name)


def test_file_names_escaping_the_images_folder_are_refused(tmp_path):
    (tmp_path / "imgs").mkdir()
    for bad in ("../x.jpg", "/etc/passwd"):
        with pytest.raises(ImageError, match="escapes"):
            image_path(tmp_path / "imgs", bad)
    assert image_path(tmp_path / "imgs", "sub/a.jpg") == tmp_path / "imgs" / "sub/a.jpg"


def test_preprocess_normalises_like_torchvision(rgb):
    torch = pytest.importorskip("torch")
    from torchvision.transforms import functional as F

    pre = Preprocess(24)
    ours = pre.normalize(pre.resize(Image.fromarray(rgb)))
    theirs = F.normalize(F.to_tensor(Image.fromarray(rgb).resize((24, 24), Image.BILINEAR)), pre.mean, pre.std)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5)


def test_preprocess_normalises_a_batch_like_each_image(rgb):
    from torchvision.transforms import functional as F

    pre = Preprocess(24)
    images = [Image.fromarray(np.roll(rgb, k, axis=1)) for k in range(3)]
    batch = pre.normalize(np.stack([pre.resize(im) for im in images]))
    assert batch.shape == (3, 3, 24, 24) and batch.flags.c_contiguous
    for got, im in zip(batch, images):
        expected = F.normalize(F.to_tensor(im.resize((24, 24), Image.BILINEAR)), pre.mean, pre.std)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_preprocess_resizes_with_its_filter_and_round_trips(rgb):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    from spml.data.artifacts import ModelInfo

    pre = Preprocess(24, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    ours = pre.normalize(pre.resize(Image.fromarray(rgb)))
    img = F.resize(Image.fromarray(rgb), [24, 24], InterpolationMode.BICUBIC)  # PIL's bicubic, via torchvision
    np.testing.assert_allclose(ours, F.normalize(F.to_tensor(img), pre.mean, pre.std).numpy(), atol=1e-5)
    assert not np.allclose(ours, Preprocess(24, pre.mean, pre.std).normalize(Preprocess(24).resize(Image.fromarray(rgb))))
    assert Preprocess.from_dict(pre.to_dict()) == pre
    old = {"image_size": 24, "mean": [0.5] * 3, "std": [0.5] * 3}  # a checkpoint from before the filter was recorded
    assert Preprocess.from_dict(old).interpolation == "bilinear"
    with pytest.raises(ValueError, match="unknown interpolation"):
        Preprocess(24, interpolation="random")
    info = ModelInfo([{"id": 1, "name": "a"}], "timm/x", 24, [0.5] * 3, [0.5] * 3, interpolation="bicubic")
    assert ModelInfo.from_props(info.to_props()).preprocess == pre
    props = {k: v for k, v in info.to_props().items() if k != "spml.interpolation"}  # exported before
    assert ModelInfo.from_props(props).preprocess.interpolation == "bilinear"
    with pytest.raises(ValueError):
        ModelInfo.from_props({**info.to_props(), "spml.interpolation": '"sinc"'})
