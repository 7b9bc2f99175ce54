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


def test_device_synthesis_makes_each_items_process_in_the_step(mini_data):
    """On a GPU, --synthesize labels real crops with a drawn domain and process (ProcessLabels) and
    the loss module makes the composites for the whole batch (here on the CPU, the same code)."""
    from domains.build import DOMAIN_SPECS
    from domains.dataset import HarmonyDataset
    from router.classifier import ClassifierConfig, DomainClassifier
    from router.synth import ProcessLabels, device_processes
    from router.train import ClassifierLoss
    base = HarmonyDataset(mini_data, "all", "train", size=32)
    ds = ProcessLabels(base, length=8)
    items = []
    for i in range(8):
        torch.manual_seed(i)
        it = ds[i]
        assert it["method"] in DOMAIN_SPECS[it["domain_name"]][4] and torch.equal(it["composite"], it["real"])
        items.append(it)
    torch.manual_seed(0)
    assert ds[0]["method"] == items[0]["method"]  # follows the torch seed
    batch = {k: torch.stack([it[k] for it in items]) for k in ("composite", "real", "mask")}
    batch.update(domain=torch.tensor([it["domain"] for it in items]), method=[it["method"] for it in items])
    class Spy:  # keeps what the loss module made
        def __init__(self, inner):
            self.inner, self.made = inner, []

        def __call__(self, real, mask, picks):
            self.made.append(self.inner(real, mask, picks=picks))
            return self.made[-1]

    spy = Spy(device_processes())
    model = DomainClassifier(ClassifierConfig(domains=tuple(base.domains), backbone="resnet10t", size=32, use_mask=True))
    out = ClassifierLoss(model, processes=spy)(batch)
    assert torch.isfinite(out["loss"]) and len(spy.made) == 1
    comp, real, mask = spy.made[0], batch["real"], batch["mask"]
    bg = (mask <= 0.5).expand_as(real)
    assert torch.equal(comp[bg], real[bg])
    changed = [(comp[i] - real[i]).abs()[(mask[i] > 0.5).expand(3, -1, -1)].mean() > 1e-3
               for i in range(8) if (mask[i] > 0.5).sum() >= 4]
    assert changed and sum(changed) >= len(changed) - 1
