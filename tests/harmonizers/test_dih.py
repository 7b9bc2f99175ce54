"""HRNet + iDIH: the OCR fusion and the mask path against references written from the paper's
formulas, the size rule, the official initialiser, the backbone's ImageNet weights and its slower
rate, training, fine-tuning and ONNX export of the tiny variant."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmonizers.dih import HRNetDIH, HRNetDIHConfig
from harmonizers.hrnet import ObjectAttentionBlock2D, SpatialGather
from harmonizers.models import create


def test_spatial_gather_is_a_softmax_weighted_mean_per_region():
    g = torch.Generator().manual_seed(0)
    feats, regions = torch.randn(2, 5, 4, 6, generator=g), torch.randn(2, 2, 4, 6, generator=g) * 3
    got = SpatialGather()(feats, regions).numpy()
    assert got.shape == (2, 5, 2, 1)
    f, r = feats.double().numpy().reshape(2, 5, -1), regions.double().numpy().reshape(2, 2, -1)
    for n in range(2):
        for k in range(2):
            w = np.exp(r[n, k] - r[n, k].max())
            w /= w.sum()
            assert np.allclose(got[n, :, k, 0], (f[n] * w).sum(1), atol=1e-5)


def test_object_attention_against_a_pixel_by_pixel_reference():
    torch.manual_seed(0)
    block = ObjectAttentionBlock2D(6, 4).eval()
    x, proxy = torch.randn(1, 6, 3, 5), torch.randn(1, 6, 2, 1)
    with torch.no_grad():
        got = block(x, proxy)[0]
        q, k, v = block.f_pixel(x)[0], block.f_object(proxy)[0, :, :, 0], block.f_down(proxy)[0, :, :, 0]
        ctx = torch.zeros(4, 3, 5)
        for i in range(3):
            for j in range(5):
                logits = torch.tensor([float(q[:, i, j] @ k[:, r]) / math.sqrt(4) for r in range(2)])
                a = torch.softmax(logits, 0)
                ctx[:, i, j] = a[0] * v[:, 0] + a[1] * v[:, 1]
        want = block.f_up(ctx[None])[0]
    assert torch.allclose(got, want, atol=1e-5)


def test_the_mask_joins_the_stem_scaled_by_its_learnt_factor():
    torch.manual_seed(0)
    net = create("hrnet_test").net.eval()
    seen = {}
    net.backbone.hrnet.conv2.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].clone()))
    img, mask = torch.rand(1, 3, 128, 128), torch.zeros(1, 1, 128, 128)
    mask[..., 30:90, 20:70] = 1
    with torch.no_grad():
        net.mask_conv[1].scale.fill_(-0.3)  # the scale acts through its absolute value
        net(img, mask)
        h = net.backbone.hrnet
        x = (img - net.mean) / net.std
        stem = F.relu(F.batch_norm(F.conv2d(x, h.conv1.weight, stride=2, padding=1), h.bn1.running_mean,
                                   h.bn1.running_var, h.bn1.weight, h.bn1.bias, eps=h.bn1.eps))
        conv = net.mask_conv[0]
        want = stem + 0.3 * F.conv2d(mask, conv.weight, conv.bias, stride=2, padding=1)
    assert torch.allclose(seen["x"], want, atol=1e-5)
    # the mask decides the output: the same image under another mask harmonizes differently
    other = torch.zeros_like(mask)
    other[..., 60:120, 60:120] = 1
    with torch.no_grad():
        assert not torch.allclose(net(img, mask), net(img, other))


def test_sizes_initialiser_and_mask_free_variant():
    net = create("hrnet_test").net
    assert net.multiple_of == 64 and net.min_side == 128
    with pytest.raises(ValueError, match="at least 128 px, got 64×64"):
        net(torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64))
    w = net.model.encoder.blocks_connected["block3"].block[0].weight  # XavierGluon(gaussian, magnitude 2)
    fan_in, fan_out = w.shape[1] * 16, w.shape[0] * 16
    assert w.std().item() == pytest.approx(math.sqrt(2 / ((fan_in + fan_out) / 2)), rel=0.1)
    assert float(net.mask_conv[1].scale.detach()) == pytest.approx(0.1)
    assert all(float(p.detach().abs().max()) == 0 for n, p in net.named_parameters()
               if n.endswith(".bias") and "bn" not in n and "block.1" not in n)
    free = HRNetDIH(HRNetDIHConfig(depth=6, ch=8, max_channels=32, width=4, small=True, ocr=8, mask_fusion="none")).eval()
    assert not hasattr(free, "mask_conv") and free(torch.rand(1, 3, 128, 128), torch.ones(1, 1, 128, 128)).shape[1] == 3


def test_backbone_weights_load_by_name_and_train_slower(tmp_path, mini_data):
    from harmonizers.train import SLOW_LR_MULT, HarmonizerTask, load_backbone_weights
    model = create("hrnet_test")
    sd = {"model." + k: torch.full_like(v, 0.5) for k, v in model.net.backbone.hrnet.state_dict().items()
          if v.is_floating_point()}
    sd["last_layer.0.weight"] = torch.zeros(3)  # the classifier's head: not ours, left out
    torch.save(sd, tmp_path / "hrnet_imagenet.pth")
    info = load_backbone_weights(model, tmp_path / "hrnet_imagenet.pth")
    assert info["tensors"] == len(sd) - 1 and info["of"] == len(sd)
    assert float(model.net.backbone.hrnet.layer1[0].conv1.weight.detach().mean()) == 0.5
    assert float(model.net.model.encoder.block0.block[0].weight.detach().abs().max()) != 0.5  # the base is untouched
    torch.save({"other.weight": torch.zeros(3)}, tmp_path / "unrelated.pth")
    from common.io import InputError
    with pytest.raises(InputError, match="no tensor matches the backbone"):
        load_backbone_weights(model, tmp_path / "unrelated.pth")
    with pytest.raises(InputError, match="has no pretrained backbone"):
        load_backbone_weights(create("issam_test"), tmp_path / "hrnet_imagenet.pth")
    task = HarmonizerTask(model, None, False, ["all"], "fp", None, {})
    fast, slow = task.param_groups(task.model)
    assert slow["lr_mult"] == SLOW_LR_MULT and "lr_mult" not in fast
    slow_ids = {id(p) for p in slow["params"]}
    ocr = model.net.backbone.hrnet.ocr_distri_head.conv_bn_dropout[0].weight
    assert id(model.net.backbone.hrnet.conv1.weight) in slow_ids and id(ocr) not in slow_ids
    assert len(slow_ids) + len(fast["params"]) == len(list(model.parameters()))


def test_hrnet_trains_with_the_engine_at_its_rates(mini_data, tmp_path):
    from common import checkpoint
    from harmonizers.train import main
    out = tmp_path / "h.safetensors"
    main(data=str(mini_data), arch="hrnet_test", out=str(out), steps=2, batch_size=2, device="cpu", workers=0)
    _, meta = checkpoint.load(out.with_name("h.last.safetensors"))
    groups = meta["optimizer"]["param_groups"]
    assert [g.get("lr_mult", 1.0) for g in groups] == [1.0, 0.1]
    assert groups[1]["initial_lr"] == pytest.approx(0.1 * groups[0]["initial_lr"])
    from harmonizers.models import load
    model, m = load(out)
    assert m["arch"] == "hrnet" and m["config"]["width"] == 4
    # per-domain finetuning from it (domains.finetune --arch), and the tables' name for the family
    from domains.finetune import main as finetune
    from eval.tables import family
    ft = tmp_path / "hrnet_MiniFlickr.safetensors"
    finetune(domain="MiniFlickr", data=str(mini_data), base=str(out), augment="none", arch="hrnet_test", out=str(ft),
             steps=1, batch_size=2, device="cpu", workers=0)
    assert load(ft)[1]["domains"] == ["MiniFlickr"] and load(ft)[1]["init"] == str(out)
    assert family("hrnet18_idih256") == "HRNet + iDIH" and family("issam_test") == "iS2AM"


def test_tiny_hrnet_zoo_exports_to_onnx_and_matches_torch(tiny_zoo, tmp_path):
    """Through the product: a zoo with an HRNet + iDIH model, exported by router.fast, predicts on
    ONNX Runtime what it predicts on torch."""
    pytest.importorskip("onnxruntime")
    from common import checkpoint
    from harmonizers.models import meta
    from router import fast
    from router import zoo as Z
    from router.api import Harmonizer
    h = create("hrnet_test").eval()
    ck = checkpoint.save(tmp_path / "hrnet.safetensors", h.state_dict(), meta(h, ["all"], "fp"))
    root = Z.build(tmp_path / "zoo", Z.read(tiny_zoo)["classifier"], unified=ck)
    fast.export(root)
    rng = np.random.default_rng(0)
    img = rng.random((150, 210, 3)).astype(np.float32)
    m = np.zeros((150, 210), np.float32)
    m[30:110, 50:160] = 1
    ours = fast.FastHarmonizer.from_zoo(root).run(img, m, "unified", gate=False).output
    ref = Harmonizer.from_zoo(root).run(img, m, "unified", gate=False).output
    assert np.abs(ours - ref).max() < 2e-3
    assert np.abs(ours - img)[m > 0].mean() > 1e-3
