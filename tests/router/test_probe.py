import pytest
import torch
from torch.utils.data import Dataset

from common.io import InputError
from router import classifier as C, probe
from router.train import main as rtrain


def _probe(domains=("dark", "bright"), regions=False):
    return C.DomainClassifier(C.ClassifierConfig(domains=domains, backbone="resnet10t", size=32, use_mask=False,
                                                 head="probe", regions=regions)).eval()


class Brightness(Dataset):
    """Class 0: dark noise, class 1: bright noise; any backbone's pooled statistics separate them."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 2
        self.x = torch.rand(n, 3, 40, 40, generator=g) * 0.4 + 0.5 * self.y.view(-1, 1, 1, 1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"composite": self.x[i], "mask": torch.ones(1, 40, 40), "domain": int(self.y[i])}


def test_pooled_features_are_mirror_invariant_and_sized_by_the_stages():
    m = _probe()
    x = torch.rand(2, 3, 48, 40)
    f = m.pooled(x, torch.ones(2, 1, 48, 40))
    assert f.shape == (2, 2 * sum(m.net.feature_info.channels())) == (2, m.feat_mean.numel())
    torch.testing.assert_close(f, m.pooled(x.flip(-1), torch.ones(2, 1, 48, 40)), rtol=1e-5, atol=1e-5)


def test_region_features_are_the_last_stage_means_over_foreground_and_background():
    m = _probe(regions=True)
    base = _probe()
    base.net.load_state_dict(m.net.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 8:24, 0:16] = 1  # one-sided: the mirror view sees it on the other side
    mask[1, :, 0:32, 16:32] = 1
    f = m.pooled(x, mask)
    n = 2 * sum(m.net.feature_info.channels())
    c = m.net.feature_info.channels()[-1]
    assert f.shape == (2, n + 2 * c) == (2, m.feat_mean.numel())
    torch.testing.assert_close(f[:, :n], base.pooled(x, mask))  # the image statistics as before
    xn = (x - m.mean) / m.std
    want = []
    for v, mv in ((xn, mask), (xn.flip(-1), mask.flip(-1))):  # independent: cells of the mask at the last stage
        last = m.net(v)[-1]
        k = 32 // last.shape[-1]
        w = mv.unfold(2, k, k).unfold(3, k, k).mean((-1, -2))
        want.append(torch.cat([(last * w).sum((2, 3)) / w.sum((2, 3)), (last * (1 - w)).sum((2, 3)) / (1 - w).sum((2, 3))], 1))
    torch.testing.assert_close(f[:, n:], (want[0] + want[1]) / 2, rtol=1e-5, atol=1e-5)
    # the foreground and background halves swap when the mask is inverted
    inv = m.pooled(x, 1 - mask)
    torch.testing.assert_close(inv[:, n:n + c], f[:, n + c:], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs head='probe'"):
        C.DomainClassifier(C.ClassifierConfig(domains=("a", "b"), backbone="resnet10t", regions=True))


def test_fit_head_learns_a_separable_task_and_generalises():
    m = _probe()
    feats, labels = probe.extract(m, Brightness(24, 0), batch_size=8)
    assert feats.shape[0] == 24 and labels.tolist() == [0, 1] * 12
    fit = probe.fit_head(m, feats, labels)
    assert fit["train_accuracy"] == 1.0
    torch.testing.assert_close(m.feat_mean, feats.mean(0))
    test = Brightness(10, 1)
    with torch.no_grad():
        pred = m(test.x, torch.ones(10, 1, 40, 40)).argmax(1)
    assert pred.tolist() == test.y.tolist()


def test_class_weights_move_the_boundary_towards_the_light_class():
    """Weighting a class up makes the head predict it more often on ambiguous inputs."""
    m = _probe()
    ds = Brightness(24, 0)
    feats, labels = probe.extract(m, ds, batch_size=8)
    mid = torch.full((6, 3, 40, 40), 0.45) + torch.rand(6, 3, 40, 40) * 0.1
    shares = []
    for w in ([1.0, 20.0], [20.0, 1.0]):
        probe.fit_head(m, feats, labels, torch.tensor(w), l2=1.0)
        with torch.no_grad():
            shares.append(m.probabilities(mid, torch.ones(6, 1, 40, 40))[:, 1].mean().item())
    assert shares[0] > shares[1]


def test_probe_refuses_a_mask_channel():
    with pytest.raises(ValueError, match="use_mask must be False"):
        C.DomainClassifier(C.ClassifierConfig(domains=("a", "b"), backbone="resnet10t", use_mask=True, head="probe"))
    with pytest.raises(ValueError, match="head must be one of"):
        C.DomainClassifier(C.ClassifierConfig(domains=("a", "b"), backbone="resnet10t", head="linear"))


def test_router_train_probe_round_trip(mini_data, tmp_path):
    out = tmp_path / "probe.safetensors"
    rtrain(data=str(mini_data), out=str(out), backbone="resnet10t", size=32, batch_size=4, device="cpu")
    m, meta = C.load(out)
    assert meta["config"]["head"] == "probe" and meta["probe"]["n"] > 0 and meta["config"]["regions"]
    x, mk = torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32)
    again, _ = C.load(out)
    torch.testing.assert_close(m(x, mk), again(x, mk))
    assert not torch.equal(m.feat_std, torch.ones_like(m.feat_std))  # fitted, not the initial buffers
    with pytest.raises(InputError, match="already exists"):
        rtrain(data=str(mini_data), out=str(out), backbone="resnet10t", size=32, batch_size=4, device="cpu")
    with pytest.raises(InputError, match="use_mask must be False"):
        rtrain(data=str(mini_data), out=str(tmp_path / "m.safetensors"), backbone="resnet10t", size=32,
               use_mask=True, device="cpu")


def test_source_weights_share_each_domain_equally_among_its_sources():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    groups = ["a", "a", "a", "b", "c", "d"]
    w = probe.source_weights(labels, groups, 2)
    # domain 0: sources a (3 rows) and b (1 row) get half each; domain 1: c and d a half each
    expect = torch.tensor([1 / 6, 1 / 6, 1 / 6, 1 / 2, 1 / 2, 1 / 2])
    torch.testing.assert_close(w, expect * 6 / expect.sum())
    assert w.mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="5 groups for 6 rows"):
        probe.source_weights(labels, groups[:5], 2)


def test_row_weights_of_one_group_per_domain_fit_the_class_weighted_head():
    """With one source per domain, source weights are the inverse-frequency domain weights, so the
    two ways of weighting fit the same head."""
    from router.train import balanced_weights
    m = _probe()
    feats, labels = probe.extract(m, Brightness(24, 0), batch_size=8)
    feats, labels = feats[:20], labels[:20]
    labels[:6] = 0  # imbalanced: 13 of class 0, 7 of class 1
    probe.fit_head(m, feats, labels, balanced_weights(labels, 2), l2=0.1)
    a = m.head.weight.detach().clone()
    probe.fit_head(m, feats, labels, l2=0.1, row_weights=probe.source_weights(labels, labels.tolist(), 2))
    torch.testing.assert_close(m.head.weight.detach(), a, rtol=1e-3, atol=1e-4)


def test_fit_head_reports_the_loss_at_the_fitted_head():
    """The recorded loss is the objective after the fit, below its value at the zero start (ln K)."""
    import math
    m = _probe()
    feats, labels = probe.extract(m, Brightness(24, 0), batch_size=8)
    fit = probe.fit_head(m, feats, labels, l2=1e-2)
    assert fit["loss"] < 0.5 * math.log(2)
