import numpy as np
import pytest
import torch

from common.io import InputError
from syconet.bank import FAMILIES, basis_bank, kmeans, procedural_pool
from syconet.lut import apply_lut, apply_lut_u8, identity_lut, lut_from_function, read_cube, write_cube


def reference_apply(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Independent trilinear reference: explicit 8-corner interpolation, float64, per pixel."""
    d = lut.shape[1]
    out = np.zeros_like(image)
    for idx in np.ndindex(image.shape[1:]):
        r, g, b = (np.clip(image[c][idx], 0, 1) * (d - 1) for c in range(3))
        r0, g0, b0 = (min(int(np.floor(v)), d - 2) for v in (r, g, b))
        fr, fg, fb = r - r0, g - g0, b - b0
        acc = np.zeros(3)
        for db in (0, 1):
            for dg in (0, 1):
                for dr in (0, 1):
                    w = (fr if dr else 1 - fr) * (fg if dg else 1 - fg) * (fb if db else 1 - fb)
                    acc += w * lut[:, b0 + db, g0 + dg, r0 + dr]
        out[(slice(None), *idx)] = acc
    return out


class TestApply:
    def test_identity_is_exact(self):
        x = torch.rand(2, 3, 17, 23)
        assert (apply_lut(x, identity_lut()) - x).abs().max() <= 1e-6
        assert (apply_lut(x, identity_lut(5)) - x).abs().max() <= 1e-6

    def test_index_convention(self):
        lut = identity_lut(9)
        assert lut[0, 0, 0, 8] == 1 and lut[1, 0, 8, 0] == 1 and lut[2, 8, 0, 0] == 1  # [c, b, g, r]

    @pytest.mark.parametrize("dim", [5, 17])
    def test_against_reference(self, dim):
        g = torch.Generator().manual_seed(dim)
        lut = torch.rand(3, dim, dim, dim, generator=g, dtype=torch.float64)
        img = torch.rand(1, 3, 6, 7, generator=g, dtype=torch.float64)
        ref = reference_apply(img[0].numpy(), lut.numpy())
        assert np.abs(apply_lut(img, lut)[0].numpy() - ref).max() <= 1e-5
        assert np.abs(apply_lut(img.float(), lut.float())[0].numpy() - ref).max() <= 1e-5

    def test_batch_equals_singles(self):
        g = torch.Generator().manual_seed(1)
        luts = torch.rand(4, 3, 9, 9, 9, generator=g)
        imgs = torch.rand(4, 3, 11, 5, generator=g)
        batched = apply_lut(imgs, luts)
        for i in range(4):
            assert torch.allclose(batched[i], apply_lut(imgs[i:i + 1], luts[i])[0], atol=1e-7)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(2)
        lut = torch.rand(2, 3, 4, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
        img = (torch.rand(2, 3, 3, 3, generator=g, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
        assert torch.autograd.gradcheck(apply_lut, (img, lut), eps=1e-6, atol=1e-5)

    def test_bad_shapes(self):
        with pytest.raises(ValueError, match="image must be N×3×H×W"):
            apply_lut(torch.rand(3, 4, 4), identity_lut(5))
        with pytest.raises(ValueError, match="2 LUTs for 3 images"):
            apply_lut(torch.rand(3, 3, 4, 4), torch.rand(2, 3, 5, 5, 5))


class TestApplyU8:
    """The 8-bit fast path against the independent float64 reference (same as ``apply_lut``'s)."""

    @pytest.mark.parametrize("method", ["direct", "planes"])
    def test_matches_reference_within_one_level(self, method):
        rng = np.random.default_rng(3)
        img = rng.integers(0, 256, (13, 29, 3), dtype=np.uint8)
        img[0, :3] = [[0, 0, 0], [255, 255, 255], [255, 0, 128]]  # lattice ends
        for lut in (torch.rand(3, 17, 17, 17, dtype=torch.float64), torch.rand(3, 5, 5, 5, dtype=torch.float64)):
            ref = reference_apply(img.transpose(2, 0, 1) / 255.0, lut.numpy()).transpose(1, 2, 0) * 255
            out = apply_lut_u8(img, lut, method=method)
            assert out.dtype == np.uint8 and out.shape == img.shape
            assert np.abs(out - ref).max() <= 0.5 + 1e-3  # correctly rounded: ≤ 1/255 with margin to spare

    @pytest.mark.parametrize("method", ["direct", "planes"])
    def test_identity_and_agrees_with_float_path(self, method):
        rng = np.random.default_rng(4)
        img = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
        assert np.array_equal(apply_lut_u8(img, identity_lut(), method=method), img)
        lut = procedural_pool(4, seed=2)[1]
        fl = apply_lut(torch.from_numpy(img).permute(2, 0, 1)[None].double() / 255, lut.double())[0]
        fl = fl.permute(1, 2, 0).numpy() * 255
        assert np.abs(apply_lut_u8(img, lut, method=method).astype(float) - fl).max() <= 0.5 + 1e-3

    def test_large_image_in_place(self):
        img = np.random.default_rng(5).integers(0, 256, (600, 7, 3), dtype=np.uint8)
        out = np.zeros_like(img)
        res = apply_lut_u8(img, identity_lut(9), out=out)
        assert res is out and np.array_equal(out, img)

    def test_auto_picks_the_planes_on_large_images_and_both_agree(self, monkeypatch):
        import common.lut as L
        rng = np.random.default_rng(6)
        img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
        lut = torch.rand(3, 17, 17, 17, generator=torch.Generator().manual_seed(1))
        a, b = apply_lut_u8(img, lut, method="direct"), apply_lut_u8(img, lut, method="planes")
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # both correctly rounded (float32 planes)
        calls = []
        real = L._u8_kernels()
        monkeypatch.setattr(L, "_u8_kernels", lambda: {**real, "planes": lambda *a: (calls.append(1), real["planes"](*a))[1]})
        monkeypatch.setattr(L, "PLANES_FROM", 1000)
        assert np.array_equal(apply_lut_u8(img, lut), b) and calls == [1]
        with pytest.raises(ValueError, match="method must be"):
            apply_lut_u8(img, lut, method="fast")

    def test_views_of_any_layout(self):
        """A transposed or strided view reads as the array it shows; a non-contiguous out is refused."""
        rng = np.random.default_rng(7)
        base = rng.integers(0, 256, (3, 20, 30), dtype=np.uint8)
        view = base.transpose(1, 2, 0)                     # H×W×3, not C-contiguous
        lut = torch.rand(3, 9, 9, 9, generator=torch.Generator().manual_seed(2))
        for method in ("direct", "planes"):
            assert np.array_equal(apply_lut_u8(view, lut, method=method),
                                  apply_lut_u8(np.ascontiguousarray(view), lut, method=method))
        with pytest.raises(ValueError, match="C-contiguous"):
            apply_lut_u8(np.ascontiguousarray(view), lut, out=np.zeros((30, 20, 3), np.uint8).transpose(1, 0, 2))

    def test_bad_input(self):
        with pytest.raises(ValueError, match="H×W×3 uint8"):
            apply_lut_u8(np.zeros((4, 4, 3), np.float32), identity_lut())
        with pytest.raises(ValueError, match="H×W×3 uint8"):
            apply_lut_u8(np.zeros((4, 4), np.uint8), identity_lut())
        with pytest.raises(ValueError, match="lut must be 3×D×D×D"):
            apply_lut_u8(np.zeros((4, 4, 3), np.uint8), torch.rand(2, 3, 5, 5, 5))


class TestCube:
    def test_roundtrip(self, tmp_path):
        lut = torch.rand(3, 5, 5, 5)
        write_cube(lut, tmp_path / "a.cube", title="random")
        assert torch.allclose(read_cube(tmp_path / "a.cube"), lut, atol=1e-6)

    def test_hand_written(self, tmp_path):
        # 2×2×2 LUT that swaps red and blue; rows are red-fastest
        rows = []
        for b in (0, 1):
            for g in (0, 1):
                for r in (0, 1):
                    rows.append(f"{b} {g} {r}")
        text = "# a comment\nTITLE \"swap\"\nLUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 1 1 1\n\n" + "\n".join(rows)
        (tmp_path / "swap.cube").write_text(text)
        lut = read_cube(tmp_path / "swap.cube")
        x = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
        assert torch.allclose(apply_lut(x, lut).flatten(), torch.tensor([0.9, 0.5, 0.2]), atol=1e-6)

    def test_domain_resampled(self, tmp_path):
        # identity over domain [0, 2]: inputs in [0, 1] map to themselves
        rows = [f"{r} {g} {b}" for b in (0, 2) for g in (0, 2) for r in (0, 2)]
        (tmp_path / "d.cube").write_text("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n" + "\n".join(rows))
        lut = read_cube(tmp_path / "d.cube")
        x = torch.rand(1, 3, 4, 4)
        assert torch.allclose(apply_lut(x, lut), x, atol=1e-6)

    def test_refusals(self, tmp_path):
        (tmp_path / "one.cube").write_text("LUT_1D_SIZE 2\n0 0 0\n1 1 1\n")
        with pytest.raises(InputError, match="1-D .cube"):
            read_cube(tmp_path / "one.cube")
        (tmp_path / "short.cube").write_text("LUT_3D_SIZE 2\n0 0 0\n")
        with pytest.raises(InputError, match="needs 8 rows, found 1"):
            read_cube(tmp_path / "short.cube")


class TestBank:
    def test_pool_and_bank(self):
        pool = procedural_pool(len(FAMILIES) * 2, dim=9, seed=0)
        assert pool.shape == (14, 3, 9, 9, 9) and pool.min() >= 0 and pool.max() <= 1
        assert (pool - identity_lut(9)).abs().flatten(1).max(1).values.min() > 0.01  # every look changes colours
        bank = basis_bank(6, dim=9, seed=0, pool_size=30)
        assert bank.shape == (6, 3, 9, 9, 9)
        assert torch.equal(bank[0], identity_lut(9))
        assert torch.equal(bank, basis_bank(6, dim=9, seed=0, pool_size=30))  # reproducible

    def test_kmeans_finds_clusters(self):
        g = torch.Generator().manual_seed(0)
        centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.0, 9.0]])
        x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])
        got = kmeans(x, 3, seed=0)
        d = torch.cdist(got, centres).min(1).values
        assert d.max() < 0.1

    def test_lut_dir(self, tmp_path):
        for i in range(4):
            write_cube(lut_from_function(lambda x, i=i: x ** (1 + 0.2 * i), 5), tmp_path / f"{i}.cube")
        bank = basis_bank(3, dim=9, lut_dir=tmp_path)
        assert bank.shape == (3, 3, 9, 9, 9)


def test_lut_regularisers():
    from syconet.lut import lut_regularisers
    d = 9
    ident = identity_lut(d)
    tv, mono = lut_regularisers(ident)
    assert mono.item() == 0.0
    assert tv.item() == pytest.approx(1 / (d - 1) ** 2, rel=1e-5)  # one channel in three moves per axis
    tv, mono = lut_regularisers(torch.full((2, 3, d, d, d), 0.3))
    assert tv.item() == 0.0 and mono.item() == 0.0
    inverted = 1 - ident  # every channel decreases along its own axis by 1/(d-1)
    # per axis one channel in three falls by 1/(d-1) at every step: mean 1/(3(d-1)), three axes
    assert lut_regularisers(inverted)[1].item() == pytest.approx(1 / (d - 1), rel=1e-5)
