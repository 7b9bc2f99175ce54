import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.grid import image_grid
from common.io import (InputError, check_image, check_mask, image_size, looks_like_mask, read_image, read_mask, read_pair, write_image)


def _rgb(tmp_path, name="a.png", size=(20, 10), mode="RGB", **kw):
    arr = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    if mode != "RGB":
        im = im.convert(mode)
    p = tmp_path / name
    im.save(p, **kw)
    return p, arr


def _mask(tmp_path, name="m.png", size=(20, 10), value=None):
    m = np.zeros((size[1], size[0]), np.uint8)
    if value is None:
        m[2:8, 5:15] = 255
    else:
        m[:] = value
    p = tmp_path / name
    Image.fromarray(m).save(p)
    return p


class TestReadImage:
    def test_rgb_values_and_shape(self, tmp_path):
        p, arr = _rgb(tmp_path)
        x = read_image(p)
        assert x.shape == (3, 10, 20) and x.dtype == torch.float32
        assert torch.allclose(x, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)

    @pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA"])
    def test_modes_become_rgb(self, tmp_path, mode):
        suffix = ".jpg" if mode == "CMYK" else ".png"
        p, arr = _rgb(tmp_path, name="x" + suffix, mode=mode)
        x = read_image(p)
        assert x.shape == (3, 10, 20)
        assert 0 <= x.min() and x.max() <= 1
        if mode in ("L", "LA"):
            assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
        if mode == "RGBA":  # alpha dropped, colours exact
            assert torch.allclose(x, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)

    def test_16bit_grey(self, tmp_path):
        a = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300)
        p = tmp_path / "g16.png"
        Image.fromarray(a).save(p)
        x = read_image(p)
        assert x.shape == (3, 10, 20)
        assert torch.allclose(x[0], torch.from_numpy(a.astype(np.float32) / 65535), atol=1e-6)

    def test_exif_orientation_applied(self, tmp_path):
        p, arr = _rgb(tmp_path, name="o.jpg", size=(20, 10))
        im = Image.open(p)
        exif = im.getexif()
        exif[0x0112] = 6  # rotate 90° CW on display
        im.save(tmp_path / "rot.jpg", exif=exif, quality=100)
        assert read_image(tmp_path / "rot.jpg").shape == (3, 20, 10)

    def test_reduced_jpeg_decoding(self, tmp_path):
        # a smooth photo-like image: reduced DCT decoding must agree with decode-then-resize
        yy, xx = np.mgrid[0:600, 0:800].astype(np.float32)
        arr = np.stack([128 + 100 * np.sin(xx / 60), 128 + 90 * np.cos(yy / 45), 60 + 0.2 * xx % 256], -1)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(tmp_path / "big.jpg", quality=95)
        full = read_image(tmp_path / "big.jpg")
        small = read_image(tmp_path / "big.jpg", at_least=(140, 180))
        assert full.shape == (3, 600, 800) and small.shape == (3, 150, 200)  # 1/4: the smallest scale >= request
        assert image_size(tmp_path / "big.jpg") == (600, 800)
        ref = torch.nn.functional.interpolate(full[None], size=(150, 200), mode="bilinear", antialias=True)[0]
        assert (small - ref).abs().mean() < 0.01
        assert read_image(tmp_path / "big.jpg", at_least=(600, 800)).shape == full.shape  # no room: full size
        # EXIF-rotated: the request and the answer are in display orientation
        im = Image.open(tmp_path / "big.jpg")
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
        assert image_size(tmp_path / "rot.jpg") == (800, 600)
        r = read_image(tmp_path / "rot.jpg", at_least=(180, 140))
        assert r.shape == (3, 200, 150)
        # PNGs (masks) always decode at full size
        p, _ = _rgb(tmp_path, name="m.png", size=(80, 60))
        assert read_image(p, at_least=(10, 10)).shape == (3, 60, 80) and image_size(p) == (60, 80)

    def test_missing(self, tmp_path):
        with pytest.raises(InputError, match="nope.png: file not found"):
            read_image(tmp_path / "nope.png")

    def test_not_an_image(self, tmp_path):
        p = tmp_path / "t.jpg"
        p.write_text("hello")
        with pytest.raises(InputError, match="t.jpg: not an image"):
            read_image(p)

    def test_truncated(self, tmp_path):
        p, _ = _rgb(tmp_path, name="big.jpg", size=(200, 200))
        data = p.read_bytes()
        (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match="cut.jpg: truncated"):
            read_image(tmp_path / "cut.jpg")

    def test_pixel_limit(self, tmp_path, monkeypatch):
        p, _ = _rgb(tmp_path)
        with pytest.raises(InputError, match="over the limit of 100"):
            read_image(p, max_pixels=100)
        monkeypatch.setenv("HARMONY_MAX_PIXELS", "150")
        with pytest.raises(InputError, match="200 pixels"):
            read_image(p)


class TestMask:
    def test_values(self, tmp_path):
        m = read_mask(_mask(tmp_path))
        assert m.shape == (1, 10, 20)
        assert m.sum() == 60 and m.max() == 1

    def test_label_masks(self, tmp_path):
        lab = np.zeros((10, 20), np.uint8)
        lab[2:6, 4:10] = 1
        Image.fromarray(lab).save(tmp_path / "01.png")  # 0/1 values: a label mask, not a black image
        assert read_mask(tmp_path / "01.png").sum() == 24
        pal = Image.fromarray(lab, mode="P")
        pal.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # VOC-style: foreground is dark red
        pal.save(tmp_path / "voc.png")
        assert read_mask(tmp_path / "voc.png").sum() == 24
        # a real grey level 1 next to other levels stays a (dim) soft mask
        soft = lab.copy()
        soft[0, 0] = 200
        Image.fromarray(soft).save(tmp_path / "soft.png")
        m = read_mask(tmp_path / "soft.png")
        assert abs(float(m.sum()) - (24 + 200) / 255) < 1e-4

    def test_alpha_of_cutout(self, tmp_path):
        rgba = np.zeros((10, 20, 4), np.uint8)
        rgba[..., :3] = 200
        rgba[3:5, 3:9, 3] = 255
        Image.fromarray(rgba).save(tmp_path / "cut.png")
        assert read_mask(tmp_path / "cut.png").sum() == 12

    def test_opaque_rgba_holding_a_grey_mask(self, tmp_path):
        """Alpha opaque but not constant (217–255), the mask in the colour channels: a grey mask."""
        rgba = np.zeros((10, 20, 4), np.uint8)
        rgba[2:8, 5:15, :3] = 255
        rgba[..., 3] = np.random.default_rng(0).integers(217, 256, (10, 20))
        Image.fromarray(rgba).save(tmp_path / "opaque.png")
        m = read_mask(tmp_path / "opaque.png")
        assert m.sum() == 60 and m.max() == 1

    def test_noise_floor_is_background(self, tmp_path):
        """An RGB mask whose background is 22–26, never 0: background 0, foreground 1, edge stays soft."""
        rng = np.random.default_rng(0)
        m = rng.integers(22, 27, (40, 40)).astype(np.uint8)
        m[10:30, 10:30] = 255
        m[10:30, 9] = 140  # a soft edge
        Image.fromarray(np.repeat(m[..., None], 3, 2)).save(tmp_path / "floor.png")
        r = read_mask(tmp_path / "floor.png")[0]
        assert float(r[0:8].max()) <= 4 / 233 and float(r[10:30, 10:30].min()) == 1
        assert abs(float(r[15, 9]) - (140 - 22) / 233) < 0.01
        check_mask(r)

    def test_jpeg_grey_mask_is_not_a_photo(self, tmp_path):
        m = np.zeros((64, 64), np.uint8)
        m[16:48, 20:44] = 255
        Image.fromarray(np.repeat(m[..., None], 3, 2)).save(tmp_path / "m.jpg", quality=70)
        r = read_mask(tmp_path / "m.jpg")[0]
        assert abs(float((r > 0.5).float().sum()) - 32 * 24) <= 40

    def test_photo_given_as_mask_is_refused(self, tmp_path):
        photo, _ = _rgb(tmp_path, "photo.png", size=(64, 48))
        with pytest.raises(InputError, match="photo.png: looks like a photo, not a mask"):
            read_mask(photo)

    def test_mask_given_as_image_is_refused(self, tmp_path):
        m = read_image(_mask(tmp_path, "mask.png"))
        with pytest.raises(InputError, match="x.png: looks like a mask, not a photo"):
            check_image(m, "x.png")
        check_image(read_image(_rgb(tmp_path)[0]))  # a photo passes, as tensor and as array
        assert not looks_like_mask(np.asarray(Image.open(_rgb(tmp_path)[0]), np.float32) / 255)
        grey = np.full((10, 20, 3), 0.5, np.float32)
        assert not looks_like_mask(grey)  # a grey photo is not a mask

    def test_pair_errors(self, tmp_path):
        img, _ = _rgb(tmp_path)
        with pytest.raises(InputError, match="no foreground"):
            read_pair(img, _mask(tmp_path, "z.png", value=0))
        with pytest.raises(InputError, match="all foreground"):
            read_pair(img, _mask(tmp_path, "f.png", value=255))
        with pytest.raises(InputError, match=r"mask is 21x10 but image .* is 20x10"):
            read_pair(img, _mask(tmp_path, "s.png", size=(21, 10)))
        x, m = read_pair(img, _mask(tmp_path))
        assert x.shape[1:] == m.shape[1:]


class TestWrite:
    def test_roundtrip_png_and_no_overwrite(self, tmp_path):
        x = torch.rand(3, 8, 12)
        p = write_image(x, tmp_path / "o.png")
        y = read_image(p)
        assert (y - x).abs().max() <= 0.5 / 255 + 1e-6
        before = p.read_bytes()
        with pytest.raises(InputError, match="already exists"):
            write_image(torch.zeros(3, 8, 12), p)
        assert p.read_bytes() == before
        write_image(torch.zeros(3, 8, 12), p, overwrite=True)
        assert read_image(p).max() == 0
        assert [f.name for f in tmp_path.iterdir()] == ["o.png"]  # no temp files left
        umask = os.umask(0)
        os.umask(umask)
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask

    def test_failed_write_leaves_nothing(self, tmp_path):
        with pytest.raises(InputError, match="unknown image suffix"):
            write_image(torch.zeros(3, 4, 4), tmp_path / "o.xyz")
        assert list(tmp_path.iterdir()) == []

    def test_grid_shape(self):
        g = image_grid([[torch.rand(3, 10, 20), torch.rand(1, 10, 20)], [torch.rand(3, 20, 20)]], height=10, pad=2)
        assert g.shape == (3, 22, 42)


class TestFindPairs:
    @staticmethod
    def _img(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(path)
        return path

    def test_layouts(self, tmp_path):
        from common.io import find_pairs
        # DIH-like: <stem>_mask beside the image
        a = tmp_path / "dih"
        self._img(a / "1.jpg"), self._img(a / "1_mask.jpg"), self._img(a / "2.jpg")
        assert find_pairs(a) == [(a / "1.jpg", a / "1_mask.jpg")]  # 2.jpg has no mask: skipped
        # composites/ + masks/ side by side (ours, CDTNet-like), .png preferred over .jpg
        b = tmp_path / "cdt"
        self._img(b / "composites" / "x.jpg"), self._img(b / "masks" / "x.jpg"), self._img(b / "masks" / "x.png")
        assert find_pairs(b / "composites") == [(b / "composites" / "x.jpg", b / "masks" / "x.png")]
        # a mask/ folder inside, masks named <stem>_mask
        c = tmp_path / "in"
        self._img(c / "y.png"), self._img(c / "mask" / "y_mask.png")
        assert find_pairs(c) == [(c / "y.png", c / "mask" / "y_mask.png")]
        # the root of a set: composites one level down (eval.userstudy compose's output, DIH's image/ + mask/)
        assert find_pairs(b) == [(b / "composites" / "x.jpg", b / "masks" / "x.png")]
        d = tmp_path / "DIH"
        self._img(d / "image" / "q.jpg"), self._img(d / "mask" / "q.png")
        assert find_pairs(d) == [(d / "image" / "q.jpg", d / "mask" / "q.png")]
        # an explicit --masks folder wins
        self._img(tmp_path / "m" / "y.png")
        assert find_pairs(c, tmp_path / "m") == [(c / "y.png", tmp_path / "m" / "y.png")]

    def test_errors(self, tmp_path):
        from common.io import find_pairs
        with pytest.raises(InputError, match="not a folder"):
            find_pairs(tmp_path / "nope")
        self._img(tmp_path / "e" / "z.jpg")
        with pytest.raises(InputError, match="no composite with a mask"):
            find_pairs(tmp_path / "e")


class TestDevice:
    def test_unknown_and_absent_devices_are_one_line_errors(self):
        from common.device import resolve
        assert resolve("cpu") == torch.device("cpu")
        assert resolve("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
        with pytest.raises(InputError, match="'tpu': unknown device"):
            resolve("tpu")
        if not torch.cuda.is_available():
            with pytest.raises(InputError, match="no CUDA GPU is usable"):
                resolve("cuda")
        else:
            with pytest.raises(InputError, match="CUDA GPU"):
                resolve(f"cuda:{torch.cuda.device_count()}")


def test_a_write_that_fails_midway_leaves_nothing_and_says_why(tmp_path):
    """Disk full / file-size limit, simulated with RLIMIT_FSIZE in a child process."""
    import subprocess
    import sys
    code = f"""
import resource, signal, sys
import numpy as np
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from common.io import InputError, write_image
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_image(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8), {str(tmp_path / 'big.png')!r})
except InputError as e:
    print("refused:", e)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused:" in r.stdout and "big.png" in r.stdout and "nothing was written" in r.stdout, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_read_image_u8_is_the_float_reading_rounded(tmp_path):
    from common.io import read_image_array, read_image_u8
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    files = {"rgb.png": Image.fromarray(rgb), "rgb.jpg": Image.fromarray(rgb), "grey.png": Image.fromarray(rgb[..., 0]),
             "rgba.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]])), "pal.png": Image.fromarray(rgb).convert("P"),
             "grey16.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "cmyk.jpg": Image.fromarray(rgb).convert("CMYK")}
    for name, im in files.items():
        im.save(tmp_path / name)
        u = read_image_u8(tmp_path / name)
        assert u.dtype == np.uint8 and u.shape == (20, 30, 3), name
        assert np.array_equal(u, np.rint(read_image_array(tmp_path / name) * 255).astype(np.uint8)), name
    assert np.array_equal(read_image_u8(tmp_path / "rgb.png"), rgb)


def test_loader_readers_equal_the_float_readings_rounded(tmp_path):
    """read_image_chw_u8 and read_mask_u8 (the training loader's 8-bit readers) return what the float
    readers return, rounded to 8 bits, for every kind of file they meet."""
    from common.io import read_image_array, read_image_chw_u8, read_image_u8, read_mask_array, read_mask_u8
    rng = np.random.default_rng(0)
    smooth = np.clip(np.cumsum(rng.integers(-6, 7, (48, 64, 3)), 1) + 128, 0, 255).astype(np.uint8)
    files = {"rgb.jpg": Image.fromarray(smooth), "grey.jpg": Image.fromarray(smooth[..., 0]),
             "cmyk.jpg": Image.fromarray(smooth).convert("CMYK"), "rgb.png": Image.fromarray(smooth)}
    for name, im in files.items():
        im.save(tmp_path / name)
        want = np.rint(read_image_array(tmp_path / name) * 255).astype(np.uint8).transpose(2, 0, 1)
        got = read_image_chw_u8(tmp_path / name)
        assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), want), name
        got[0, 0, 0] = 7  # writable: its own pixels, not Pillow's read-only buffer
    big = tmp_path / "big.jpg"  # a reduction the DCT scale serves goes through Pillow's draft
    Image.fromarray(np.repeat(np.repeat(smooth, 4, 0), 4, 1)).save(big)
    assert np.array_equal(read_image_chw_u8(big, at_least=(48, 64)).numpy(),
                          read_image_u8(big, at_least=(48, 64)).transpose(2, 0, 1))

    grey = np.zeros((30, 40), np.uint8)
    grey[5:25, 10:30] = 255
    grey[5:25, 8:10] = 128
    floor = np.where(grey == 0, 22, grey).astype(np.uint8)
    label = (grey > 0).astype(np.uint8)
    masks = {"clean.png": Image.fromarray(grey), "floor.png": Image.fromarray(floor), "label.png": Image.fromarray(label),
             "rgb.png": Image.fromarray(np.dstack([grey] * 3)), "soft.jpg": Image.fromarray(grey),
             "cutout.png": Image.fromarray(np.dstack([np.full_like(grey, 90)] * 3 + [grey]))}
    for name, im in masks.items():
        im.save(tmp_path / name)
        got = read_mask_u8(tmp_path / name)
        assert got.dtype == np.uint8 and got.flags.writeable, name
        assert np.array_equal(got, np.rint(read_mask_array(tmp_path / name) * 255).astype(np.uint8)), name
    assert np.array_equal(read_mask_u8(tmp_path / "clean.png"), grey)
    assert read_mask_u8(tmp_path / "floor.png").min() == 0  # the noise floor is stretched away
    with pytest.raises(InputError, match="missing.png"):
        read_mask_u8(tmp_path / "missing.png")
