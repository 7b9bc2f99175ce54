"""The gated colour transform harmonizer, the fresh-pair augmenter and the side-by-side comparison."""
import json
import random

import pytest
import torch

from common.io import InputError
from domains.transfer import rgb_to_lab as ref_lab
from harmonizers import augment as A
from harmonizers.gct import lab_to_rgb, rgb_to_lab
from harmonizers.fullres import harmonize
from harmonizers.models import create, load
from harmonizers.train import fn_mse


def _pairs(n=8, side=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, 3, side, side, generator=g) * 0.6 + 0.2
    mask = torch.zeros(n, 1, side, side)
    mask[..., 6:18, 6:18] = 1
    return real, mask


def test_lab_matches_numpy_reference_and_round_trips():
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64).float()
    want = torch.from_numpy(ref_lab(x.permute(0, 2, 3, 1).double().numpy())).permute(0, 3, 1, 2).float()
    assert (rgb_to_lab(x) * 100 - want).abs().max() < 1e-3
    assert (lab_to_rgb(rgb_to_lab(x)) - x).abs().max() < 1e-4


@pytest.mark.parametrize("size", [(17, 33), (64, 64), (5, 120)])
def test_untrained_model_is_the_identity_at_any_size(size):
    h = create("gct_test").eval()
    x = torch.rand(2, 3, *size)
    m = (torch.rand(2, 1, *size) > 0.5).float()
    out = h(x, m)
    assert out.shape == x.shape and (out - x).abs().max() < 1e-4
    assert torch.equal(out[(m == 0).expand_as(x)], x[(m == 0).expand_as(x)])


def test_learns_to_undo_a_foreground_shift_and_leaves_real_photos_alone():
    torch.manual_seed(0)
    h = create("gct_test", hidden=32)
    opt = torch.optim.Adam(h.parameters(), 1e-2)
    real, mask = _pairs(16)
    shift = torch.tensor([0.15, -0.05, -0.1])[None, :, None, None]
    comp = real + mask * shift
    both_c, both_r, both_m = torch.cat([comp, real]), torch.cat([real, real]), torch.cat([mask, mask])
    first = fn_mse(h(both_c, both_m), both_r, both_m, 1.0).item()
    for _ in range(150):
        loss = fn_mse(h(both_c, both_m), both_r, both_m, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    h.eval()
    assert fn_mse(h(comp, mask), real, mask, 1.0).item() < 0.3 * fn_mse(comp, real, mask, 1.0).item()
    assert loss.item() < 0.3 * first
    p = h.net.params(comp, mask)
    assert ((p["gate"] > 0) & (p["gate"] < 1)).all()


def test_full_resolution_and_checkpoint_round_trip(tmp_path):
    from common import checkpoint
    from harmonizers.models import meta
    h = create("gct_test").eval()
    torch.nn.init.normal_(h.net.mlp[-1].weight, std=0.5)
    path = checkpoint.save(tmp_path / "g.safetensors", h.state_dict(), meta(h, ["A"], "fp"))
    h2, m = load(path)
    assert m["arch"] == "gct"
    x, mask = torch.rand(3, 150, 97), torch.zeros(1, 150, 97)
    mask[:, 40:110, 20:70] = 1
    a, b = harmonize(h, x, mask), harmonize(h2, x, mask)
    assert torch.allclose(a, b, atol=1e-6) and torch.equal(a[:, :40], x[:, :40])
    low = h(torch.nn.functional.interpolate(x[None], (32, 32), mode="bilinear", antialias=True),
            torch.nn.functional.interpolate(mask[None], (32, 32), mode="bilinear", antialias=True))
    assert (a - x).abs().max() > 1e-3 and low.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("batched", [False, True], ids=["per-image", "batched"])
class TestProcessAugmenter:
    def test_background_kept_and_foregrounds_changed(self, batched):
        random.seed(0)
        real, mask = _pairs(12, side=32)
        aug = A.ProcessAugmenter(identity=0.0, batched=batched).to("cpu")
        assert aug.in_loader != batched
        out = aug(real, mask)
        bg = (mask == 0).expand_as(real)
        assert torch.allclose(out[bg], real[bg], atol=1e-6)
        changed = ((out - real).abs() * mask).flatten(1).sum(1) / (3 * mask.flatten(1).sum(1))
        assert (changed > 1e-3).float().mean() >= 0.9

    def test_one_named_process_only(self, batched):
        random.seed(2)
        real, mask = _pairs(6, side=16)
        out = A.ProcessAugmenter(identity=0.0, methods=("lut",), batched=batched)(real, mask)
        bg = (mask == 0).expand_as(real)
        assert torch.equal(out[bg], real[bg]) and (out - real).abs().amax() > 1e-3

    def test_identity_share(self, batched):
        random.seed(1)
        real, mask = _pairs(200, side=16)
        out = A.ProcessAugmenter(identity=0.5, batched=batched)(real, mask)
        same = ((out - real).abs().flatten(1).amax(1) < 1e-7).float().mean().item()
        assert 0.38 < same < 0.62

    def test_parse(self, batched):
        assert A.parse("processes") == A.AugmentSpec("processes", 0.3, None, text="processes")
        assert A.parse("processes:0.1") == A.AugmentSpec("processes", 0.1, None, text="processes:0.1")
        spec = A.parse("processes:0.5:expert+lut")
        assert (spec.kind, spec.share, spec.processes, spec.dynamic) == ("processes", 0.5, ("expert", "lut"), True)
        assert A.parse(spec) is spec and not A.parse("static:2:x.safetensors").dynamic
        with pytest.raises(InputError, match="unknown process"):
            A.ProcessAugmenter(0.1, ("sepia",))
        with pytest.raises(InputError, match="processes:P"):
            A.parse("processes:lots")
        with pytest.raises(InputError, match=r"\[0, 1\)"):
            A.ProcessAugmenter(1.0)


def test_compare_reports_harm_rate_and_drift(mini_data, tmp_path):
    from harmonizers.train import main as train
    from eval.compare import main as compare, parse_ckpts
    ck = tmp_path / "g.safetensors"
    train(data=str(mini_data), arch="gct_test", out=str(ck), steps=2, batch_size=4, augment="processes",
          device="cpu", save_every=100)
    compare(data=str(mini_data), ckpts=f"gct={ck}", out=str(tmp_path / "cmp"))
    res = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert list(res["methods"]) == ["composite", "reinhard", "gct"]
    comp, gct = res["methods"]["composite"]["All"], res["methods"]["gct"]["All"]
    assert comp["harm_rate"] == 0 and comp["real_drift"] == 0 and comp["fMSE_vs_composite"] == 0
    assert 0 <= gct["harm_rate"] <= 1 and gct["real_drift"] >= 0
    assert res["methods"]["reinhard"]["All"]["real_drift"] > 1       # Reinhard moves real photos
    assert (tmp_path / "cmp" / "grid_best_worst.png").is_file()
    with pytest.raises(InputError, match="already holds"):
        compare(data=str(mini_data), ckpts=f"gct={ck}", out=str(tmp_path / "cmp"))
    with pytest.raises(InputError, match="NAME=CHECKPOINT"):
        parse_ckpts("nonsense")


def test_calibration_picks_the_identity_for_a_harmful_model_and_finetuning_resets_it(mini_data, tmp_path):
    from common import checkpoint
    from domains.dataset import train_val
    from harmonizers.models import meta
    from harmonizers.train import build, calibrate
    h = create("gct_test", size=32).eval()
    torch.nn.init.constant_(h.net.mlp[-1].bias, 2.0)        # a big fixed push on every foreground
    ck = checkpoint.save(tmp_path / "bad.safetensors", h.state_dict(), meta(h, ["x"], "fp"))
    _, val = train_val(mini_data, "all", 32, False, 0.5)
    info = calibrate(ck, val)
    assert info["strength"] == 0.0 and info["scores"][0.0]["fMSE"] < info["scores"][1.0]["fMSE"]
    assert info["scores"][0.0]["drift"] < 0.01 < info["scores"][1.0]["drift"]
    model, m = load(ck)
    assert m["calibration"]["strength"] == 0.0 and float(model.net.strength) == 0.0
    x, mask = torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    mask[..., :8, :] = 0
    assert (model(x, mask) - x).abs().max() < 1e-4                 # scale 0: the identity
    again, _ = build("gct_test", str(ck), None)
    assert float(again.net.strength) == 1.0


def test_the_final_write_calibrates_as_rewriting_the_file_did(mini_data, tmp_path):
    """The engine's one final write (Task.final) with no best checkpoint: the same weights and
    calibration record as writing the file, then calibrating it in place."""
    import math

    from common import checkpoint
    from domains.dataset import train_val
    from harmonizers.models import meta
    from harmonizers.train import HarmonizerTask, calibrate
    h = create("gct_test", size=32).eval()
    torch.nn.init.constant_(h.net.mlp[-1].bias, 0.3)
    _, val = train_val(mini_data, "all", 32, False, 0.5)
    m = {**meta(h, ["x"], "fp"), "step": 3, "best": math.inf}
    task = HarmonizerTask(h, None, False, ["x"], "fp", val, {}, calibrate=(val, math.inf))
    tensors, got = task.final(h.state_dict(), m, tmp_path / "a.safetensors", None)
    once = checkpoint.save(tmp_path / "once" / "a.safetensors", tensors, got)
    ck = checkpoint.save(tmp_path / "a.safetensors", h.state_dict(), m)
    info = calibrate(ck, val, math.inf)
    assert once.read_bytes() == ck.read_bytes()
    assert task.calibration == info and got["calibration"]["from"] == "a.safetensors"


def test_calibration_obeys_the_drift_limit(tmp_path, monkeypatch):
    """The lowest fMSE among scales that move real photos by at most the limit, never beyond it."""
    from common import checkpoint
    from harmonizers import train as HT
    from harmonizers.models import meta
    h = create("gct_test").eval()
    ck = checkpoint.save(tmp_path / "g.safetensors", h.state_dict(), meta(h, ["x"], "fp"))
    fake = {0.0: {"fMSE": 100.0, "drift": 0.0}, 0.5: {"fMSE": 80.0, "drift": 2.0},
            1.0: {"fMSE": 60.0, "drift": 5.0}}
    monkeypatch.setattr(HT, "calibration_scores", lambda model, ds: fake)
    assert HT.calibrate(ck, None)["strength"] == 0.5
    assert HT.calibrate(ck, None, drift_limit=6.0)["strength"] == 1.0
    assert HT.calibrate(ck, None, drift_limit=1.0)["strength"] == 0.0
    assert float(load(ck)[0].net.strength) == 0.0
    # the limit holds with a margin of one standard error of the held-out photos' drift
    fake[0.5]["drift_se"] = 0.6
    assert HT.calibrate(ck, None)["strength"] == 0.0
    assert HT.calibrate(ck, None, drift_limit=2.6)["strength"] == 0.5


def test_calibration_drift_is_averaged_per_photo_with_its_standard_error(mini_data):
    """Each held-out photo counts once however many composites it has; the standard error is that
    of the per-photo means."""
    from domains.dataset import HarmonyDataset
    from harmonizers import train as HT
    ds = HarmonyDataset(mini_data, "all", "train", size=32, train=False)
    model = create("gct_test").eval()
    with torch.no_grad():
        model.net.mlp[-1].bias.copy_(torch.tensor([0.3, -0.2, 0.1, 0.2, -0.1, 0.05, 3.0]))
    scores = HT.calibration_scores(model, ds, grid=(0.0, 1.0))
    import common.metrics as M
    from domains.dataset import batches
    with torch.no_grad():
        drift = torch.cat([M.drift(model(b["real"], b["mask"]), b["real"], b["mask"]) for b in batches(ds, 32)])
    photos = [str(s.real) for s in ds.samples]
    means = torch.stack([drift[[i for i, q in enumerate(photos) if q == p]].mean() for p in dict.fromkeys(photos)])
    assert len(means) < len(drift)  # some photos have several composites
    assert scores[1.0]["drift"] == pytest.approx(float(means.mean()), rel=1e-5)
    assert scores[1.0]["drift_se"] == pytest.approx(float(means.std() / len(means) ** 0.5), rel=1e-5)
    assert scores[0.0]["drift"] == pytest.approx(0.0, abs=1e-4) and scores[1.0]["drift_se"] > 0


def test_foreground_chroma_features_and_the_first_release_layout():
    from harmonizers.gct import GCTConfig, GatedColourTransform
    x, mask = _pairs(2)
    with_c, without = GatedColourTransform(GCTConfig(fg_chroma=True)), GatedColourTransform(GCTConfig())
    assert with_c.mlp[0].in_features == 41 and without.mlp[0].in_features == 39
    lab = rgb_to_lab(x)
    f, mf = with_c.features(lab, mask)
    f0, _ = without.features(lab, mask)
    assert f.shape == (2, 41) and f0.shape == (2, 39)
    fg = lab.permute(1, 0, 2, 3)[:, mask[:, 0] > 0.5].reshape(3, 2, -1).mean(-1).T
    assert torch.allclose(mf, fg, atol=1e-5)
    # the foreground's lightness is feature 30 in both layouts; a and b follow it with fg_chroma
    assert torch.allclose(f[:, 30:33], fg, atol=1e-5) and torch.allclose(f0[:, 30], fg[:, 0], atol=1e-5)
    assert torch.equal(f[:, :30], f0[:, :30]) and torch.equal(f[:, 33:], f0[:, 31:])
    assert create("gct64c").net.cfg.fg_chroma and not create("gct64").net.cfg.fg_chroma
    n = lambda v: sum(p.numel() for p in create(v).net.parameters())  # noqa: E731
    assert create("gct64w").net.cfg.hidden == 512 and n("gct64w") > 30 * n("gct64")


def test_folds_partition_the_photos_the_same_way_for_any_subset(mini_data):
    from domains.dataset import load_samples, split_folds
    samples = load_samples(mini_data, "all", "train")
    photos = {(s.domain, s.real.name) for s in samples}
    held = [split_folds(samples, 3, k) for k in range(3)]
    sets = [{(s.domain, s.real.name) for s in h} for _, h in held]
    assert set().union(*sets) == photos and sum(map(len, sets)) == len(photos)      # a partition
    for fit, h in held:
        assert len(fit) + len(h) == len(samples)
        assert not {(s.domain, s.real.name) for s in fit} & {(s.domain, s.real.name) for s in h}
    assert split_folds(samples, 3, 1) == held[1]                                      # deterministic
    one = samples[0].domain                              # a domain's folds: the all-domain folds restricted
    sub = [s for s in samples if s.domain == one]
    for k in range(3):
        assert split_folds(sub, 3, k)[1] == [s for s in held[k][1] if s.domain == one]
    for bad in ((3, 3), (1, 0)):
        with pytest.raises(InputError, match="at least 2 folds"):
            split_folds(samples, *bad)


def test_pooled_calibration_scores_equal_those_of_the_union(mini_data):
    """Pooling two held-out sets' raw scores gives the scores of both sets scored together."""
    from domains.dataset import HarmonyDataset, load_samples, split_folds
    from harmonizers import train as HT
    samples = load_samples(mini_data, "all", "train")
    a, b = split_folds(samples, 2, 0)
    model = create("gct_test").eval()
    with torch.no_grad():
        model.net.mlp[-1].bias.copy_(torch.tensor([0.3, -0.2, 0.1, 0.2, -0.1, 0.05, 3.0]))
    ds = lambda ss: HarmonyDataset(mini_data, "all", "train", size=32, train=False, samples=ss)  # noqa: E731
    pooled = HT.summarise([HT.calibration_raw(model, ds(b), grid=(0.0, 1.0)),
                           HT.calibration_raw(model, ds(a), grid=(0.0, 1.0))])
    whole = HT.calibration_scores(model, ds(b + a), grid=(0.0, 1.0))
    for s in (0.0, 1.0):
        for k in ("fMSE", "drift", "drift_se"):
            assert pooled[s][k] == pytest.approx(whole[s][k], rel=1e-5, abs=1e-6)
    assert pooled[1.0]["photos"] == len({s.real for s in samples}) and pooled[1.0]["composites"] == len(samples)


def test_calibration_reads_across_the_set_and_weighs_groups_alike(mini_data):
    """Over ``max_images``, the held-out composites are read spread over the set (every domain of a
    set stored domain by domain), not its head; with groups, each group's mean weighs the same in
    the fMSE and in the drift (checked against means computed here from the raw scores)."""
    from domains.dataset import HarmonyDataset, load_samples
    from harmonizers import train as HT
    assert HT.spread(5, 10) == [0, 1, 2, 3, 4] and HT.spread(10, 4) == [0, 3, 6, 9] and HT.spread(7, 1) == [0]
    samples = load_samples(mini_data, "all", "train")
    ds = HarmonyDataset(mini_data, "all", "train", size=32, train=False, samples=samples)
    model = create("gct_test").eval()
    with torch.no_grad():
        model.net.mlp[-1].bias.copy_(torch.tensor([0.3, -0.2, 0.1, 0.2, -0.1, 0.05, 3.0]))
    few = HT.calibration_raw(model, ds, grid=(0.0, 1.0), max_images=4)
    assert len(few["fMSE"][1.0]) == 4
    assert samples[0].domain != samples[-1].domain  # the fixture is stored domain by domain
    by_domain = {s.composite.name: s.domain for s in samples}
    raw = HT.calibration_raw(model, ds, grid=(0.0, 1.0), max_images=4, groups=by_domain)
    assert raw["group"][0] == samples[0].domain and raw["group"][-1] == samples[-1].domain
    raw = HT.calibration_raw(model, ds, grid=(0.0, 1.0), groups=by_domain)
    scores = HT.summarise([raw])
    f, g = raw["fMSE"][1.0], raw["group"]
    keys = sorted(set(g))
    assert len(keys) > 1 and scores[1.0]["groups"] == len(keys)
    want = sum(float(f[[i for i, x in enumerate(g) if x == k]].mean()) for k in keys) / len(keys)
    assert scores[1.0]["fMSE"] == pytest.approx(want, rel=1e-6)
    d, pg = raw["drift"][1.0], raw["photo_group"]
    want = sum(float(d[[i for i, x in enumerate(pg) if x == k]].mean()) for k in keys) / len(keys)
    assert scores[1.0]["drift"] == pytest.approx(want, rel=1e-6)
    plain = HT.summarise([{k: v for k, v in raw.items() if "group" not in k}])
    assert plain[1.0]["fMSE"] == pytest.approx(float(f.mean()), rel=1e-6) and "groups" not in plain[1.0]


def test_calibration_by_cross_fitting(mini_data, tmp_path):
    from domains.dataset import load_samples
    from harmonizers.train import main
    out = tmp_path / "g.safetensors"
    main(data=str(mini_data), arch="gct_test", out=str(out), steps=2, batch_size=4, augment="processes:0.5",
         device="cpu", workers=0, calibrate_folds=2)
    assert (tmp_path / "g.fold0.safetensors").exists() and (tmp_path / "g.fold1.safetensors").exists()
    model, m = load(out)
    cal = m["calibration"]
    n_photos = len({s.real for s in load_samples(mini_data, "all", "train")})
    assert sum(f["photos"] for f in cal["folds"]) == n_photos == cal["scores"]["1.0"]["photos"]
    assert float(model.net.strength) == cal["strength"] and str(cal["strength"]) in cal["scores"]
    assert m["data_fingerprint"] != load(tmp_path / "g.fold0.safetensors")[1]["data_fingerprint"]  # all photos
    # a domain's cross-fitted finetune starts each fold from the base's model of the same fold
    dom = load_samples(mini_data, "all", "train")[0].domain
    ft = tmp_path / "d.safetensors"
    main(data=str(mini_data), domains=dom, init=str(out), out=str(ft), steps=2, batch_size=4,
         augment="processes:0.5", device="cpu", workers=0, calibrate_folds=2)
    folds = load(ft)[1]["calibration"]["folds"]
    assert folds and all(f["init"] == f"g.{f['out'].split('.')[1]}.safetensors" for f in folds)
    one = [d for d in {s.domain for s in load_samples(mini_data, "all", "train")}
           if len({s.real for s in load_samples(mini_data, d, "train")}) == 1]
    if one:  # a domain of one photo: no fold leaves photos to train on, refused before any training
        with pytest.raises(InputError, match="1 training photo\\(s\\), too few to cross-fit 2 folds"):
            main(data=str(mini_data), domains=one[0], init=str(out), out=str(tmp_path / "one.safetensors"), steps=2,
                 calibrate_folds=2)
        assert not (tmp_path / "one.fold0.safetensors").exists()
    with pytest.raises(InputError, match="has none"):
        main(data=str(mini_data), arch="issam_test", out=str(tmp_path / "i.safetensors"), steps=1, calibrate_folds=2)
    with pytest.raises(InputError, match="at least 2"):
        main(data=str(mini_data), arch="gct_test", out=str(tmp_path / "j.safetensors"), steps=1, calibrate_folds=1)


def test_rescale_picks_again_from_the_recorded_scores(tmp_path, monkeypatch):
    """harmonizers.rescale re-chooses the scale from the scores in the file, without training."""
    from common import checkpoint
    from common.io import InputError
    from harmonizers import train as HT
    from harmonizers.models import meta
    from harmonizers.rescale import rescale
    h = create("gct_test").eval()
    ck = checkpoint.save(tmp_path / "g.safetensors", h.state_dict(), meta(h, ["x"], "fp"))
    with pytest.raises(InputError, match="no recorded calibration"):
        rescale(ck, tmp_path / "r.safetensors")
    fake = {0.0: {"fMSE": 100.0, "drift": 0.0}, 0.5: {"fMSE": 80.0, "drift": 2.0},
            1.0: {"fMSE": 60.0, "drift": 5.0}, 1.25: {"fMSE": 70.0, "drift": 7.0}}
    monkeypatch.setattr(HT, "calibration_scores", lambda model, ds: fake)
    HT.calibrate(ck, None)
    res = rescale(ck, tmp_path / "full.safetensors", "inf")
    assert res["was"] == 0.5 and res["strength"] == 1.0          # the lowest fMSE, drift not limited
    m = checkpoint.read_meta(tmp_path / "full.safetensors")
    assert m["calibration"]["drift_limit"] is None and m["calibration"]["rule"] == "lowest fMSE"
    assert float(load(tmp_path / "full.safetensors")[0].net.strength) == 1.0
    assert rescale(ck, tmp_path / "r1.safetensors", 1.0)["strength"] == 0.0
    with pytest.raises(InputError, match="already exists"):
        rescale(ck, tmp_path / "full.safetensors")
    with pytest.raises(InputError, match="drift_limit"):
        rescale(ck, tmp_path / "x.safetensors", "lots")


def test_strongest_scale_that_still_helps():
    from harmonizers.rescale import strongest
    fake = {0.0: {"fMSE": 100.0}, 0.5: {"fMSE": 80.0}, 1.0: {"fMSE": 95.0}, 1.25: {"fMSE": 90.0}}
    assert strongest(fake) == 1.0                     # capped at the trained gate, still below the identity
    fake[1.0]["fMSE"] = 120.0
    assert strongest(fake) == 0.5
    assert strongest({0.0: {"fMSE": 1.0}, 0.5: {"fMSE": 2.0}}) == 0.0
