"""Unified, routed, soft and oracle on held-out photos, each fold scored by models that left it out."""
import torch
import pytest

from common.io import InputError


def test_modes_scores_each_fold_with_the_models_that_left_it_out(mini_data, tmp_path):
    """The unified row equals the cross-fitted calibration scores of the fold models at the zoo's
    scale (computed independently, by harmonizers.train.calibration_raw); every mode sees every
    training composite once; a missing fold model is named."""
    from common import checkpoint
    from domains.build import MINI4_NAMES
    from domains.dataset import load_samples, split_folds, train_val
    from eval.modes import modes
    from harmonizers.models import load
    from harmonizers.train import calibration_raw, main, summarise
    from router import zoo as Z
    from router.classifier import ClassifierConfig, DomainClassifier, meta
    kw = dict(data=str(mini_data), steps=2, batch_size=4, augment="processes:0.5", device="cpu", workers=0,
              calibrate_folds=2)
    main(arch="gct_test", out=str(tmp_path / "g_all.safetensors"), **kw)
    samples = load_samples(mini_data, "all", "train")
    doms = [d for d in sorted({s.domain for s in samples})  # domains with photos on both sides of both folds
            if all(all(split_folds([s for s in samples if s.domain == d], 2, k)) for k in range(2))]
    assert doms
    for d in doms:
        main(domains=d, init=str(tmp_path / "g_all.safetensors"), out=str(tmp_path / f"g_{d}.safetensors"), **kw)
    tensors, m = checkpoint.load(tmp_path / "g_all.safetensors")  # a scale that acts, whatever calibration chose
    checkpoint.save(tmp_path / "u.safetensors", {**tensors, "net.strength": torch.tensor(0.7)}, m)
    clf = DomainClassifier(ClassifierConfig(domains=tuple(MINI4_NAMES), backbone="resnet10t", size=32,
                                            use_mask=False, head="probe")).eval()
    zoo = Z.build(tmp_path / "zoo", checkpoint.save(tmp_path / "c.safetensors", clf.state_dict(), meta(clf, "fp")),
                  domains={d: str(tmp_path / f"g_{d}.safetensors") for d in doms}, unified=tmp_path / "u.safetensors")
    res = modes(data=str(mini_data), zoo=str(zoo), runs=str(tmp_path), family="g", folds=2, batch_size=4)
    assert res["composites"] == len(samples) and res["photos"] == len({s.real for s in samples})
    raws = []
    for k in range(2):
        model, _ = load(tmp_path / f"g_all.fold{k}.safetensors")
        raws.append(calibration_raw(model, train_val(mini_data, "all", model.size, fold=(k, 2))[1], grid=(0.0, 0.7)))
    ref = summarise(raws)
    assert res["modes"]["unified"]["fMSE"] == pytest.approx(ref[0.7]["fMSE"], rel=1e-5)
    assert res["modes"]["unified"]["drift"] == pytest.approx(ref[0.7]["drift"], rel=1e-5)
    assert res["fMSE_composite"] == pytest.approx(ref[0.0]["fMSE"], rel=1e-5)
    assert set(res["modes"]) == {"unified", "routed", "soft", "oracle"}
    assert all(0 <= r["harm_rate"] <= 1 and r["drift"] >= 0 for r in res["modes"].values())
    # the zoo lacks some domains' models: their oracle falls back to the unified model, never to nothing
    assert set(doms) != {s.domain for s in samples}
    assert all(r["fMSE"] < 2 * res["fMSE_composite"] for r in res["modes"].values())
    (tmp_path / f"g_{doms[0]}.fold1.safetensors").unlink()
    with pytest.raises(InputError, match=rf"g_{doms[0]}.fold1.safetensors: no fold model"):
        modes(data=str(mini_data), zoo=str(zoo), runs=str(tmp_path), family="g", folds=2)



def test_the_probes_command_dispatches_to_each_question():
    from eval import detectability, modes, priors, probes, routability, strength
    owners = {"prior": priors, "frontier": priors, "strength": strength, "separability": routability,
              "routing_sources": routability, "realness": detectability, "modes": modes}
    assert set(probes.CLI) == set(owners)
    for name, mod in owners.items():
        assert probes.CLI[name].__wrapped__ is getattr(mod, name)
