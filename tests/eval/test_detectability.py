"""Can a composite be told from its real photo: ROC AUC and the realness probe."""
import torch
import pytest

from common.io import InputError


def test_roc_auc_against_pairwise_counting():
    import torch
    from common.io import InputError
    from eval.detectability import roc_auc
    g = torch.Generator().manual_seed(0)
    score = torch.randint(0, 5, (40,), generator=g).float()   # many ties
    label = torch.randint(0, 2, (40,), generator=g)
    pos, neg = score[label == 1].tolist(), score[label == 0].tolist()
    want = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert abs(roc_auc(score, label) - want) < 1e-12
    assert roc_auc(torch.tensor([0.1, 0.9]), torch.tensor([0, 1])) == 1.0
    with pytest.raises(InputError, match="positives and negatives"):
        roc_auc(torch.ones(3), torch.ones(3, dtype=torch.long))


def test_realness_scores_held_out_photos(mini_data):
    from domains.dataset import load_samples
    from eval.detectability import realness
    res = realness(data=str(mini_data), folds=2, size=32)
    samples = load_samples(mini_data, "all", "train")
    assert res["composites"] == len(samples) and res["photos"] == len({s.real for s in samples})
    assert res["features"] == 39 and 0 <= res["auc"] <= 1 and 0 <= res["accuracy"] <= 1
    assert set(res["per_domain"]) == {s.domain for s in samples}
    assert realness(data=str(mini_data), folds=2, size=32, fg_chroma=True)["features"] == 41
    with pytest.raises(InputError, match="folds"):
        realness(data=str(mini_data), folds=1)
    with pytest.raises(InputError, match="gct or classifier"):
        realness(data=str(mini_data), features="pixels")


def test_realness_with_classifier_features(mini_data, tmp_path):
    from eval.detectability import realness
    from router.classifier import ClassifierConfig, DomainClassifier, meta
    from common import checkpoint
    model = DomainClassifier(ClassifierConfig(domains=("MiniCOCO", "MiniAdobe", "MiniFlickr", "MiniDay2night"),
                                              backbone="resnet10t", size=32, use_mask=False, head="probe")).eval()
    ck = checkpoint.save(tmp_path / "c.safetensors", model.state_dict(), meta(model, "fp"))
    res = realness(data=str(mini_data), folds=2, features="classifier", ckpt=str(ck))
    assert res["features"] == model.pooled(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)).shape[1]
    assert 0 <= res["auc"] <= 1

