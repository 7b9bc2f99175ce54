import torch

from syconet.model import create


def test_sample_cpu_fast_path_matches_float_render():
    """``syconet.sample`` on the CPU (8-bit ``apply_lut_u8``) equals the float ``render`` to rounding."""
    from syconet.sample import sample
    torch.manual_seed(0)
    m = create("syconet_test").eval()
    real = torch.randint(0, 256, (3, 40, 56)).float() / 255  # an 8-bit image, as read from disk
    mask = torch.zeros(1, 40, 56)
    mask[:, 8:30, 10:45] = 1
    got = sample(m, real, mask, k=3, seed=5)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, m.cfg.z_dim, generator=g)
    small = m._small(torch.cat([real, mask])[None])
    with torch.no_grad():
        alpha = m.coefficients(small[:, :3].expand(3, -1, -1, -1), small[:, 3:].expand(3, -1, -1, -1), z)
        want = m.render(real[None].expand(3, -1, -1, -1), mask[None].expand(3, -1, -1, -1), alpha)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 0.5 / 255 + 1e-5
    assert (got - real).abs().max() > 1 / 255  # the samples do change the foreground
