"""CUDA agrees with the CPU (skipped where no GPU is present; run on a GPU machine with ``-m gpu``)."""
import pytest
import torch

from common import checkpoint
from harmonizers.fullres import harmonize
from harmonizers.models import create
from syconet.lut import apply_lut
from syconet.model import create as create_syco

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda")


def test_apply_lut_cuda_matches_cpu_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(4, 3, 37, 53, generator=g, requires_grad=True)
    luts = torch.rand(4, 3, 17, 17, 17, generator=g, requires_grad=True)
    cpu = apply_lut(img, luts)
    cpu.square().sum().backward()
    img_c = img.detach().to(CUDA).requires_grad_()
    luts_c = luts.detach().to(CUDA).requires_grad_()
    gpu = apply_lut(img_c, luts_c)
    gpu.square().sum().backward()
    assert (gpu.cpu() - cpu).abs().max() < 1e-5
    assert (img_c.grad.cpu() - img.grad).abs().max() < 1e-3
    assert (luts_c.grad.cpu() - luts.grad).abs().max() / luts.grad.abs().max() < 1e-4


def test_syconet_generation_cuda_matches_cpu():
    torch.manual_seed(0)
    m = create_syco("syconet_test").eval()
    real, mask, z = torch.rand(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float(), torch.randn(2, m.cfg.z_dim)
    with torch.no_grad():
        a = m.generate(real, mask, z=z)
        b = m.to(CUDA).generate(real.to(CUDA), mask.to(CUDA), z=z.to(CUDA)).cpu()
    assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("arch", ["issam_test", "rainnet_test"])
def test_harmonize_cuda_matches_cpu(arch):
    torch.manual_seed(0)
    m = create(arch).eval()
    x, mask = torch.rand(3, 150, 210), torch.zeros(1, 150, 210)
    mask[:, 30:120, 40:170] = 1
    a = harmonize(m, x, mask)
    b = harmonize(m.to(CUDA), x, mask)
    assert (a - b).abs().max() < 1e-4


def test_training_on_cuda_amp_channels_last(mini_data, tmp_path):
    from harmonizers.train import main
    out = tmp_path / "h.safetensors"
    main(data=str(mini_data), arch="issam_test", out=str(out), size=64, steps=4, batch_size=4, device="cuda",
         amp=True, channels_last=True)
    tensors, meta = checkpoint.load(out, kind="harmonizer")  # loads on the CPU
    assert meta["step"] == 4 and all(torch.isfinite(t).all() for t in tensors.values())


def test_syconet_training_on_cuda_channels_last(mini_data, tmp_path):
    from syconet.train import main
    out = tmp_path / "s.safetensors"
    main(data=str(mini_data), domains="MiniDay2night", out=str(out), arch="syconet_test", size=64, steps=3,
         batch_size=4, device="cuda", amp=True, channels_last=True)
    assert checkpoint.read_meta(out)["step"] == 3


def test_rainnet_gan_and_regrade_training_on_cuda(mini_data, tmp_path):
    """RainNet's adversarial term (critic in the .last checkpoint only) and the re-grade augmentation
    with random-LUT composites, under bf16 AMP on CUDA."""
    from harmonizers.train import main
    out = tmp_path / "r.safetensors"
    main(data=str(mini_data), arch="rainnet_test", out=str(out), size=64, steps=3, batch_size=4, device="cuda",
         amp=True, gan_weight=1.0, augment="lut", regrade=0.5)
    tensors, meta = checkpoint.load(out, kind="harmonizer")
    assert meta["step"] == 3 and meta["regrade"] == 0.5 and not any(k.startswith("critic") for k in tensors)
    assert all(torch.isfinite(t).all() for t in tensors.values())
    last, _ = checkpoint.load(tmp_path / "r.last.safetensors")
    assert any("critic" in k for k in last)


def test_regrade_on_cuda_matches_cpu_lut():
    from harmonizers.augment import Regrade
    rg = Regrade(1.0).to(CUDA)
    comp, real = torch.rand(3, 3, 20, 24, device=CUDA), torch.rand(3, 3, 20, 24, device=CUDA)
    torch.manual_seed(0)
    c2, r2 = rg(comp, real)
    torch.manual_seed(0)  # the same draw of looks, applied on the CPU
    idx = torch.randint(len(rg.pool), (3,))
    luts = rg.pool.cpu()[idx]
    assert (c2.cpu() - apply_lut(comp.cpu(), luts)).abs().max() < 1e-5
    assert (r2.cpu() - apply_lut(real.cpu(), luts)).abs().max() < 1e-5


def test_syconet_finetune_replay_and_head_on_cuda(mini_data, tmp_path):
    from syconet.train import main
    base = tmp_path / "all.safetensors"
    kw = dict(data=str(mini_data), arch="syconet_test", size=64, batch_size=4, device="cuda", amp=True)
    main(domains="all", out=str(base), steps=2, **kw)
    main(domains="MiniDay2night", init=str(base), out=str(tmp_path / "ft.safetensors"), steps=2, replay=0.5,
         tune="head", **kw)
    assert checkpoint.read_meta(tmp_path / "ft.safetensors")["step"] == 2


def test_soft_routing_on_cuda_matches_cpu(tiny_zoo, tmp_path):
    from router import Harmonizer
    g = torch.Generator().manual_seed(0)
    img, mask = torch.rand(3, 120, 160, generator=g), torch.zeros(1, 120, 160)
    mask[:, 20:90, 30:120] = 1
    for mode in ("soft", "routed", "unified"):
        a = Harmonizer.from_zoo(tiny_zoo)(img, mask, mode=mode)
        b = Harmonizer.from_zoo(tiny_zoo, device="cuda")(img, mask, mode=mode)
        assert (a - b.cpu()).abs().max() < 1e-3, mode


def test_batched_processes_on_cuda_match_cpu_and_train(mini_data, tmp_path):
    """The colour processes batched on the GPU (what --augment processes runs there) give the CPU's
    values for the same parameters, and a GCT run with them trains on the device."""
    import numpy as np

    from domains import batched as B
    from harmonizers.augment import ProcessAugmenter
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 40 * 40, 3, generator=g, dtype=torch.float64) * 0.6 + 0.2
    m = torch.zeros(3, 40 * 40, dtype=torch.bool)
    m[:, 300:1200] = True
    ref, s = x.flip(0) ** 1.5, torch.tensor([1.0, 0.8, 0.6], dtype=torch.float64)
    rots = torch.from_numpy(np.stack([[np.linalg.qr(np.random.default_rng(k * 10 + i).standard_normal((3, 3)))[0]
                                       for i in range(10)] for k in range(3)]))
    for name in ("reinhard", "xiao", "histogram", "pitie"):
        fn = getattr(B, name)
        args = (x, m, ref, m, s) + ((rots,) if name == "pitie" else ())
        cpu = fn(*args)
        gpu = fn(*(a.to(CUDA) for a in args)).cpu()
        assert (cpu - gpu).abs().max() < 1e-6, name
    aug = ProcessAugmenter(0.0).to(CUDA)
    assert aug.batched and not aug.in_loader
    real = torch.rand(8, 3, 32, 32, device=CUDA)
    mask = torch.zeros(8, 1, 32, 32, device=CUDA)
    mask[..., 8:24, 8:24] = 1
    out = aug(real, mask)
    assert out.device.type == "cuda" and torch.equal(out * (1 - mask), real * (1 - mask))
    from harmonizers.train import main
    main(data=str(mini_data), arch="gct_test", augment="processes:0.3", steps=3, batch_size=4, size=32,
         device="cuda", out=str(tmp_path / "g.safetensors"), save_every=100)
    assert (tmp_path / "g.safetensors").exists()


def test_compiled_training_on_cuda(mini_data, tmp_path):
    """--compile on the GPU: iS2AM trains with its network compiled, and its checkpoint loads."""
    from harmonizers.train import main
    out = tmp_path / "c.safetensors"
    main(data=str(mini_data), arch="issam_test", out=str(out), size=64, steps=3, batch_size=4, device="cuda",
         compile=True)
    tensors, meta = checkpoint.load(out, kind="harmonizer")
    assert meta["step"] == 3 and not any("_orig_mod" in k for k in tensors)


def test_synthesized_classifier_training_on_cuda(mini_data, tmp_path):
    """router.train --synthesize on the GPU makes the composites in the training step."""
    from router.train import main
    out = tmp_path / "r.safetensors"
    main(data=str(mini_data), out=str(out), head="finetune", backbone="resnet10t", size=32, steps=3, batch_size=4,
         device="cuda", synthesize=True, use_mask=True)
    tensors, meta = checkpoint.load(out, kind="classifier")
    assert meta["step"] == 3 and all(torch.isfinite(t).all() for t in tensors.values())
