import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from common.io import InputError
from domains.dataset import HarmonyDataset, list_domains, load_samples
from eval.baselines import composite
from eval.score import score


class TestDataset:
    def test_items_and_paired_transforms(self, mini_data):
        ds = HarmonyDataset(mini_data, "all", "train", size=32)
        torch.manual_seed(0)
        for i in range(0, len(ds), max(1, len(ds) // 8)):
            b = ds[i]
            assert b["composite"].shape == (3, 32, 32) and b["mask"].shape == (1, 32, 32)
            assert ds.domains[b["domain"]] == b["domain_name"]
            bg = (b["mask"] < 0.01).expand(3, -1, -1)
            if bg.any():  # same crop and flip on all three: backgrounds still agree
                assert (b["composite"] - b["real"])[bg].abs().mean() < 0.03

    def test_cache_is_bounded_and_transparent(self, mini_data, monkeypatch):
        full = HarmonyDataset(mini_data, "all", "train", size=16, train=False)
        none = HarmonyDataset(mini_data, "all", "train", size=16, train=False, cache=False)
        small = HarmonyDataset(mini_data, "all", "train", size=16, train=False, cache_mb=0.02)
        for i in range(len(full)):
            a, b, c = full[i], none[i], small[i]
            for k in ("composite", "real", "mask"):
                assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k])
            assert torch.equal(full[i]["composite"], a["composite"])  # served from the cache: the same
        assert none.cache is None
        assert small.cache_bytes <= 0.02 * 2 ** 20 and 0 < len(small.cache) < len(full.cache)
        assert full.cache_bytes == sum(t.numel() for t in full.cache.values())
        # every image is reduced to a short side of 2*size before cropping, cached or not
        assert all(min(t.shape[1:]) <= 32 for (_, size), t in full.cache.items() if size == 16)
        monkeypatch.setenv("HARMONY_CACHE_MB", "0")
        assert HarmonyDataset(mini_data, "all", "train", size=16).cache_budget == 0
        monkeypatch.setenv("HARMONY_CACHE_MB", "lots")
        with pytest.raises(InputError, match="HARMONY_CACHE_MB"):
            HarmonyDataset(mini_data, "all", "train", size=16)

    def test_one_cache_per_process(self, mini_data, monkeypatch):
        """Datasets share the process's budget (several trainings in one process hold one cache,
        not one each); a dataset's own size keys its images, and a shared item is the same."""
        monkeypatch.setenv("HARMONY_CACHE_MB", "7")
        a = HarmonyDataset(mini_data, "all", "train", size=16, train=False)
        b = HarmonyDataset(mini_data, "all", "test", size=16, train=False)
        c = HarmonyDataset(mini_data, "all", "train", size=20, train=False)
        assert a.cache is b.cache is c.cache and a.cache_budget == 7 * 2 ** 20
        first = a[0]
        n = len(a.cache)
        again = HarmonyDataset(mini_data, "all", "train", size=16, train=False)[0]  # from the shared cache
        assert len(a.cache) == n and all(torch.equal(first[k], again[k]) for k in ("composite", "real", "mask"))
        c[0]  # the same files at another size: their own entries
        assert len(a.cache) == n + 3 and {k[1] for k in a.cache} == {16, 20}
        assert a.cache_bytes == sum(t.numel() for t in a.cache.values()) <= a.cache_budget

    def test_training_crops_in_uint8_and_evaluation_items_in_float(self, mini_data):
        """Training crops are taken from the uint8 images and converted after (cached or decoded, the
        same); evaluation items are resized in float from the same uint8 images, as before."""
        from torchvision import tv_tensors
        cached = HarmonyDataset(mini_data, "all", "train", size=24)
        decoded = HarmonyDataset(mini_data, "all", "train", size=24, cache=False)
        for i in range(len(cached)):
            torch.manual_seed(i)
            a = cached[i]
            torch.manual_seed(i)
            b = decoded[i]
            for k in ("composite", "real", "mask"):
                assert torch.equal(a[k], b[k])
                assert torch.equal(a[k], (a[k] * 255).round() / 255)  # from 8-bit values
        ev = HarmonyDataset(mini_data, "all", "test", size=24)
        s = ev.samples[0]
        x = ev.load(s.composite, False)
        want = ev.tf(tv_tensors.Image(x)).as_subclass(torch.Tensor).clamp(0, 1)
        assert torch.equal(ev[0]["composite"], want) and x.dtype == torch.float32

    def test_mismatched_sizes_named(self, mini_data, tmp_path):
        root = tmp_path / "d"
        shutil.copytree(mini_data / "MiniFlickr", root / "MiniFlickr")
        s = load_samples(root, "MiniFlickr", "train")[0]
        Image.open(s.mask).resize((10, 12)).save(s.mask)
        ds = HarmonyDataset(root, "MiniFlickr", "train", size=16)
        with pytest.raises(InputError, match=f"{s.composite.name}.*sizes differ"):
            ds[0]

    def test_ihd_layout(self, ihd_data, mini_data):
        assert list_domains(ihd_data) == ["HFlickr"]
        ours = load_samples(ihd_data, "HFlickr", "test")
        assert ours and all(s.real.name.startswith("f1") for s in ours)
        a = score(ihd_data, composite).summary()
        b = score(mini_data, composite, domains="MiniFlickr").summary()
        for k in ("MSE", "fMSE", "PSNR", "fSSIM"):
            assert a["HFlickr"][k] == pytest.approx(b["MiniFlickr"][k], rel=1e-6)

    def test_bad_lists(self, ihd_data, tmp_path):
        root = tmp_path / "bad"
        shutil.copytree(ihd_data, root)
        lines = (root / "IHD_test.txt").read_text().split()
        (root / "IHD_test.txt").write_text("\n".join(lines + ["HFlickr/../../../etc/x_1_1.jpg"]))
        with pytest.raises(InputError, match="outside the dataset root"):
            load_samples(root, "all", "test")
        (root / "IHD_test.txt").write_text("\n".join(lines + ["HFlickr/composite_images/f9999_1_1.jpg"]))
        with pytest.raises(InputError, match=r"3 listed file\(s\) are missing, e.g. .*f9999_1_1.jpg"):
            load_samples(root, "all", "test")
        with pytest.raises(InputError, match="unknown domain"):
            load_samples(root, "HCOCO", "test")


def test_holdout_validation_split(mini_data):
    from domains.dataset import load_samples, split_holdout, train_val
    samples = load_samples(mini_data, "all", "train")
    fit, val = split_holdout(samples, 0.25)
    reals = {(s.domain, s.real.name) for s in samples}
    fit_r, val_r = {(s.domain, s.real.name) for s in fit}, {(s.domain, s.real.name) for s in val}
    assert fit_r.isdisjoint(val_r) and fit_r | val_r == reals  # by photo, nothing lost
    assert len(val_r) == max(1, round(0.25 * len(reals))) and len(fit) + len(val) == len(samples)
    assert split_holdout(list(reversed(samples)), 0.25)[1] == [s for s in reversed(samples) if s in val]  # order-free
    assert split_holdout(samples, 0.0) == (samples, [])
    tr, va = train_val(mini_data, "all", size=32, val_fraction=0.25)
    assert {s.real for s in tr.samples}.isdisjoint({s.real for s in va.samples}) and not va.train
    test_reals = {s.real for s in load_samples(mini_data, "all", "test")}
    assert test_reals.isdisjoint({s.real for s in va.samples})  # validation never touches the test split
    assert train_val(mini_data, "all", size=32, val_fraction=0.0)[1] is None


def test_photo_subsets_are_nested_and_group_weights_balance(mini_data):
    from domains.dataset import group_weights, subset_photos
    samples = load_samples(mini_data, "all", "train")
    reals = lambda ss: {(s.domain, s.real.name) for s in ss}  # noqa: E731
    n = len(reals(samples))
    small, big = subset_photos(samples, 2, seed=1), subset_photos(samples, 4, seed=1)
    assert len(reals(small)) == 2 and len(reals(big)) == 4 and reals(small) <= reals(big)
    assert reals(subset_photos(samples, 4, seed=2)) != reals(big) or n <= 4
    assert subset_photos(samples, 0) == samples and subset_photos(samples, n + 5) == samples
    groups = {s.composite.name: ("a" if i < 3 else "b") for i, s in enumerate(samples)}
    w = group_weights(samples, groups)
    assert abs(w.sum() - 1) < 1e-12 and abs(w[:3].sum() - 0.5) < 1e-12 and len(set(np.round(w[3:], 12))) == 1
