import torch


def test_process_composites_label_the_process(mini_data):
    from domains.dataset import HarmonyDataset
    from router.synth import ProcessComposites
    base = HarmonyDataset(mini_data, "all", "train", size=32)
    ds = ProcessComposites(base, length=12, work_size=48)
    seen = set()
    for i in range(12):
        torch.manual_seed(i)
        it = ds[i]
        assert it["composite"].shape == (3, 32, 32) and it["mask"].shape == (1, 32, 32)
        assert ds.domains[it["domain"]] == it["domain_name"]
        fg = it["mask"] > 0.5
        if fg.any():
            assert (it["composite"] - it["real"]).abs()[fg.expand(3, -1, -1)].mean() > 0.005
        seen.add(it["domain_name"])
    assert len(seen) >= 2
    torch.manual_seed(3)
    a = ds[0]["composite"]
    torch.manual_seed(3)
    assert torch.equal(a, ds[0]["composite"])  # follows the torch seed (the engine's per-sample seed)
