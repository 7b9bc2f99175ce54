"""The published architectures: state dicts equal the official facts, official checkpoints convert
and load, bad ones are refused, and the official formulas (RAIN, the blur kernel, the LUT kernel,
the initialiser) hold."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from common import checkpoint
from harmonizers import convert as C
from harmonizers.models import create, load
from harmonizers.rainnet import RAIN
from syconet.official import KERNEL_SCALE, OfficialSycoNet

from ..conftest import ROOT


def _ours(model, prefix):
    return [(k[len(prefix):], tuple(v.shape)) for k, v in model.state_dict().items() if k.startswith(prefix)]


@pytest.mark.parametrize("kind,variant", [("issam", "issam256"), ("rainnet", "rainnet256"),
                                          ("hrnet18_idih256", "hrnet18_idih256")])
def test_state_dict_equals_official_facts(kind, variant):
    facts = C.facts(C.KINDS[kind][0])
    model = create(variant)
    assert _ours(model, "net.") == [(e["key"], tuple(e["shape"])) for e in facts["keys"]]  # keys, shapes, order
    assert sum(p.numel() for p in model.parameters()) == facts["total_parameters"]
    kinds = {e["key"]: e["kind"] for e in facts["keys"]}
    params = {n[len("net."):] for n, _ in model.named_parameters()}
    assert {k for k, v in kinds.items() if v == "parameter"} == params  # buffers stay buffers


def test_hrnet_family_facts_and_siblings():
    """The released HRNet + iDIH file's facts: 1,974 entries, 18,512,633 parameters, the OCR output
    (128 channels) concatenated into encoder block 2 beside its 64; the sibling kinds, checked against
    our variants, carry the widths of their names."""
    f = C.facts(C.KINDS["hrnet18_idih256"][0])
    assert f["num_state_dict_entries"] == 1974 and f["total_parameters"] == 18512633
    net = create("hrnet18_idih256").net
    assert net.backbone.out_channels == [128]
    assert net.model.encoder.blocks_connected["block2"].block[0].weight.shape[1] == 64 + 128
    shapes = {k: C.expected_shapes(k) for k in ("hrnet18s_idih256", "hrnet32_idih256", "hrnet18_v2p_idih256")}
    assert shapes["hrnet32_idih256"]["backbone.hrnet.transition1.0.0.weight"] == (32, 256, 3, 3)
    assert "backbone.hrnet.layer1.2.conv1.weight" not in shapes["hrnet18s_idih256"]      # 2 blocks, not 4
    assert shapes["hrnet18_v2p_idih256"]["backbone.downsize.reduce_conv.block.0.weight"] == (256, 128, 1, 1)
    assert len([k for k in shapes["hrnet18_v2p_idih256"] if k.startswith("model.encoder.connectors")]) == 0  # cat
    assert shapes["hrnet18_v2p_idih256"]["model.encoder.blocks_connected.block5.block.0.weight"][1] == 256 + 256


def test_syconet_official_state_dict_equals_facts():
    model = OfficialSycoNet()
    facts = C.facts("syconet_released_state_dict.json")
    assert _ours(model, "enc_r.") == [(e["key"], tuple(e["shape"])) for e in facts["keys"]]
    assert sum(p.numel() for p in model.enc_r.parameters()) == facts["total_parameters"]
    luts = C.facts(C.LUT_FACTS)
    assert model.bank.shape == (len(luts["entries"]), *luts["entries"][0]["state_dict"][0]["shape"])
    assert model.bank.numel() == luts["total_parameters"]


def _random_official(kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in C.expected_shapes(kind).items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7, dtype=torch.int64)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:  # activations stay of order one (no denormal slow paths in deep nets)
            sd[k] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.05 + (1.0 if k.endswith(".weight") else 0.0)
    return sd


@pytest.mark.parametrize("kind,variant,size", [("issam", "issam256", 64), ("rainnet", "rainnet256", 256),
                                               ("hrnet18_idih256", "hrnet18_idih256", 256),
                                               ("idih256", "idih256", 256)])
def test_convert_official_layout_then_load(kind, variant, size, tmp_path):
    sd = _random_official(kind)
    src = tmp_path / "official.pth"
    torch.save(sd, src)
    out = C.convert(src, tmp_path / "ours.safetensors", kind)
    model, meta = load(out)
    assert meta["arch"] == create(variant).arch and meta["size"] == 256 and meta["converted"]["files"][0]["name"] == "official.pth"
    ref = create(variant).eval()
    ref.load_state_dict({"net." + k: v for k, v in sd.items()})
    x = torch.rand(1, 3, size, size)
    m = torch.zeros(1, 1, size, size)
    m[..., size // 4: size // 2, size // 3: size - 8] = 1
    with torch.no_grad():
        assert torch.equal(model(x, m, keep_background=False), ref(x, m, keep_background=False))
        assert not torch.allclose(model(x, m), x)  # random weights change the foreground
    with pytest.raises(Exception, match="already exists"):
        C.convert(src, out, kind)
    # a DataParallel save (module. prefix) converts to the same tensors
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "dp.pth")
    t2, _ = checkpoint.load(C.convert(tmp_path / "dp.pth", tmp_path / "dp.safetensors", kind))
    t1, _ = checkpoint.load(out)
    assert t1.keys() == t2.keys() and all(torch.equal(v, t1[k]) for k, v in t2.items())


def test_convert_syconet_and_generate(tmp_path):
    sd = _random_official("syconet")
    g = torch.Generator().manual_seed(1)
    from syconet.lut import identity_lut
    luts = {str(i): {"LUT": identity_lut(17) + 0.05 * torch.randn(3, 17, 17, 17, generator=g)} for i in range(20)}
    torch.save(sd, tmp_path / "pretrained_net_Er.pth")
    torch.save(luts, tmp_path / "pretrained_net_LUTs.pth")
    out = C.convert(tmp_path / "pretrained_net_Er.pth", tmp_path / "syco.safetensors", "syconet")  # LUT file found
    from syconet.model import load as sload
    model, meta = sload(out)
    assert meta["arch"] == "syconet_official" and len(meta["converted"]["files"]) == 2
    assert torch.equal(model.bank[3], luts["3"]["LUT"])
    real = torch.rand(2, 3, 80, 120)
    mask = torch.zeros(2, 1, 80, 120)
    mask[..., 20:60, 30:90] = 1
    z = torch.randn(2, 32)
    with torch.no_grad():
        a = model.generate(real, mask, z)
        w = model.coefficients(real, mask, z)
    assert a.shape == real.shape and a.min() >= 0 and a.max() <= 1  # clamped as the official output
    assert torch.equal(a[..., :20, :], real[..., :20, :])           # background untouched
    assert torch.allclose(w.sum(1), torch.ones(2)) and w.shape == (2, 20)
    from harmonizers.augment import SycoNetAugmenter  # the released SycoNet augments training as ours does
    aug = SycoNetAugmenter(out)
    small, small_mask = real[..., :64, :64], mask[..., :64, :64]
    gen = aug(small, small_mask)
    assert gen.shape == small.shape and not torch.equal(gen, small)


def test_syconet_lookup_matches_the_official_kernel():
    """The official trilinear kernel, written from its description: cell = 1.000001/16, index
    ⌊x/cell⌋, fraction fmod(x, cell)/cell, LUT indexed [c, b, g, r]."""
    g = torch.Generator().manual_seed(0)
    lut = torch.rand(3, 17, 17, 17, generator=g)
    x = torch.rand(1, 3, 9, 11, generator=g)
    x[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.5])
    model = OfficialSycoNet(bank=lut[None].repeat(20, 1, 1, 1, 1))
    mask = torch.ones(1, 1, 9, 11)
    got = model.render(x, mask, torch.full((1, 20), 1 / 20))[0].detach().double().numpy()
    L, cell = lut.double().numpy(), np.float32(1.000001 / 16)
    want = np.zeros((3, 9, 11))
    for i in range(9):
        for j in range(11):
            r, gg, b = (np.float32(v) for v in x[0, :, i, j].numpy())
            ids = [int(np.floor(v / cell)) for v in (r, gg, b)]
            fr = [float(np.fmod(v, cell) / cell) for v in (r, gg, b)]
            acc = np.zeros(3)
            for db in (0, 1):
                for dg in (0, 1):
                    for dr in (0, 1):
                        wgt = (fr[0] if dr else 1 - fr[0]) * (fr[1] if dg else 1 - fr[1]) * (fr[2] if db else 1 - fr[2])
                        acc += wgt * L[:, min(ids[2] + db, 16), min(ids[1] + dg, 16), min(ids[0] + dr, 16)]
            want[:, i, j] = np.clip(acc, 0, 1)
    assert np.abs(got - want).max() < 2e-5
    assert KERNEL_SCALE == 1.000001


def test_rain_follows_the_official_formulas():
    torch.manual_seed(0)
    norm = RAIN(4)
    with torch.no_grad():
        for p in norm.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 4, 8, 8)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:10, 2:12] = 1
    got = norm(x, mask)
    m = mask[..., ::2, ::2]  # nearest neighbour at half size
    for n in range(2):
        fg, bg = m[n, 0] > 0, m[n, 0] == 0
        for c in range(4):
            v = x[n, c]
            mf, vf = v[fg].mean(), v[fg].var(unbiased=False)
            mb, vb = v[bg].mean(), v[bg].var(unbiased=False)
            nf, nb = fg.sum(), bg.sum()  # the official divides by (count + 1e-5)
            mf, vf = mf * nf / (nf + 1e-5), vf * nf / (nf + 1e-5)
            mb, vb = mb * nb / (nb + 1e-5), vb * nb / (nb + 1e-5)
            sb, sf = (vb + 1e-5).sqrt(), (vf + 1e-5).sqrt()
            want_b = (v - mb) / sb * (1 + norm.background_gamma[c]) + norm.background_beta[c]
            want_f = ((v - mf) / sf * sb + mb) * (1 + norm.foreground_gamma[c]) + norm.foreground_beta[c]
            want = torch.where(fg, want_f, want_b)
            assert torch.allclose(got[n, c], want, atol=1e-4)


def test_issam_blur_kernel_and_initialiser():
    model = create("issam256").net
    k = model.decoder.up_blocks[2].attention.mask_blurring.weight[0, 0]
    ax = torch.arange(7.0) - 3
    want = torch.exp(-ax[:, None] ** 2 / 2 - ax[None, :] ** 2 / 2)
    assert torch.allclose(k, want / want.sum(), atol=1e-7)
    w = model.encoder.blocks_connected["block3"].convs.block[1].block[0].weight  # 256×256×3×3
    fan = 256 * 9
    assert w.std().item() == pytest.approx(math.sqrt(2 / (fan + fan)), rel=0.02)
    assert all(float(b.detach().abs().max()) == 0 for n, b in model.named_parameters() if n.endswith(".bias"))
    # the mask blur is a stored buffer: a checkpoint's kernel (random, in the released file) loads
    assert "decoder.up_blocks.2.attention.mask_blurring.weight" in model.state_dict()


class Evil:  # pickled code: a class the safe loader must refuse
    def __reduce__(self):
        return (print, ("pwned",))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harmonizers.convert", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_corrupted_checkpoints_are_refused(tmp_path):
    from common.io import InputError
    sd = _random_official("issam")
    cases = {}
    missing = dict(sd)
    missing.pop("decoder.to_rgb.bias")
    cases["missing"] = (missing, "1 missing (decoder.to_rgb.bias)")
    wrong = dict(sd)
    wrong["decoder.to_rgb.weight"] = torch.zeros(4, 32, 1, 1)
    cases["shape"] = (wrong, "decoder.to_rgb.weight (4, 32, 1, 1) (expected (3, 32, 1, 1))")
    extra = {**sd, "decoder.extra.weight": torch.zeros(1)}
    cases["extra"] = (extra, "1 unexpected (decoder.extra.weight)")
    cases["pickled"] = ({**sd, "evil": Evil()}, "would run pickled code (print)")
    for name, (obj, msg) in cases.items():
        src = tmp_path / f"{name}.pth"
        torch.save(obj, src)
        with pytest.raises(InputError) as e:
            C.convert(src, tmp_path / f"{name}.safetensors", "issam")
        assert msg in str(e.value) and str(src) in str(e.value), name
        assert not (tmp_path / f"{name}.safetensors").exists()
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        C.convert(tmp_path / "junk.pth", tmp_path / "j.safetensors", "issam")
    torch.save(_random_official("rainnet"), tmp_path / "rain.pth")  # the right file for another kind
    with pytest.raises(InputError, match="missing .* unexpected"):
        C.convert(tmp_path / "rain.pth", tmp_path / "r.safetensors", "issam")
    # the command: one line, exit 2, nothing run, nothing written
    r = _cli(tmp_path / "pickled.pth", tmp_path / "p.safetensors", "--kind", "issam")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "pickled code" in r.stderr
    assert "pwned" not in r.stdout + r.stderr and not (tmp_path / "p.safetensors").exists()


@pytest.mark.parametrize("kind,arch", [("issam", "issam"), ("hrnet18_idih256", "hrnet")])
def test_converted_model_runs_in_a_zoo(kind, arch, tiny_zoo, mini_data, tmp_path):
    from router import zoo as Z
    torch.save(_random_official(kind), tmp_path / f"{kind}.pth")
    r = _cli(tmp_path / f"{kind}.pth", tmp_path / f"{kind}.safetensors", "--kind", kind)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["arch"] == arch
    zoo = Z.build(tmp_path / "zoo", tiny_zoo / "classifier.safetensors", unified=tmp_path / f"{kind}.safetensors")
    img = sorted((mini_data / "MiniFlickr" / "composite_images").iterdir())[0]
    mask = mini_data / "MiniFlickr" / "masks" / (img.stem.rsplit("_", 1)[0] + ".png")
    out = tmp_path / "out.png"
    r = subprocess.run([sys.executable, "-m", "router", "predict", str(img), str(mask), "--zoo", str(zoo),
                        "--mode", "unified", "--out", str(out), "--backend", "torch"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["model"] == "unified" and out.is_file()
