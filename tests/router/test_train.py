import pytest
import torch


def test_balanced_weights_favour_small_domains(mini_data):
    from domains.dataset import HarmonyDataset
    from router.train import balanced_weights, domain_labels
    ds = HarmonyDataset(mini_data, "all", "train", size=32)
    w = balanced_weights(domain_labels(ds), len(ds.domains))
    counts = [sum(s.domain == d for s in ds.samples) for d in ds.domains]
    assert w.mean().item() == pytest.approx(1.0)
    assert w[counts.index(min(counts))] >= w[counts.index(max(counts))]
    assert (w * torch.tensor(counts, dtype=torch.float)).std() < 1e-3 * w.sum() * max(counts)
