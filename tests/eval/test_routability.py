"""Can the domains be routed: colour-statistics separability and leave-one-source-out routing."""
import json

import numpy as np
import torch
import pytest

from common.io import InputError


def test_probe_colour_features_and_separability(mini_data):
    import torch
    from domains.transfer import rgb_to_lab
    from eval.routability import fit_linear, colour_features, separability
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 24, 32, generator=g)
    mask = torch.zeros(1, 24, 32)
    mask[:, 4:16, 8:24] = 1
    f = colour_features(img, mask)
    assert f.shape == (49,) and np.isfinite(f).all()
    fg_lab = rgb_to_lab(img.permute(1, 2, 0)[mask[0] > 0.5].double().numpy())
    assert np.allclose(f[:3], fg_lab.mean(0), atol=1e-3) and f[-1] == np.float32(mask.mean())
    # a foreground quantised to 8 levels per channel leaves most 8-bit levels between its extremes empty
    q = img.clone()
    q[:, 4:16, 8:24] = (q[:, 4:16, 8:24] * 7).round() / 7
    assert (colour_features(q, mask)[42:45] > 0.9).all() and (f[42:45] < 0.9).all()
    # the fitter separates separable classes
    x = torch.cat([torch.randn(30, 5, generator=g) + 4 * torch.eye(5)[k] for k in range(3)])
    y = torch.arange(3).repeat_interleave(30)
    assert (fit_linear(x, y, 3)(x).argmax(1) == y).float().mean() == 1.0
    res = separability(data=str(mini_data), n=24, size=32)
    assert res["n_train"] == 24 and res["n_fresh"] == 8
    assert all(0 <= res[f"accuracy_{k}"] <= 1 for k in ("train", "fresh", "test"))
    assert sum(sum(r.values()) for r in res["confusion_test"].values()) == res["n_test"]


def test_routing_sources_leaves_each_source_out(photos12, tmp_path):
    import shutil

    from domains.build import MINI4_NAMES, build, photo_source, source_of
    from eval.routability import routing_sources
    from router.train import main as rtrain
    assert [source_of(p) for p in ("blender-data 3.4.1+dfsg-2 (debian)", "gcompris-qt-data_4.1-1_all.deb",
                                   "scikit_image-0.26.0-cp311-cp311-manylinux_2_28_x86_64.whl", "lomiri-wallpapers")] == \
        ["blender-data", "gcompris-qt-data", "scikit_image", "lomiri-wallpapers"]
    assert [photo_source(r) for r in ({"source_package": "gcompris-qt-data_4.1-1_all.deb", "source": "x"},
                                      {"source": "static_street_boston"}, {"name": "n"})] == \
        ["gcompris-qt-data", "static_street_boston", "unknown"]
    photos = tmp_path / "photos"
    shutil.copytree(photos12, photos)
    names = sorted(p.stem for p in (photos / "images").glob("*.jpg"))
    rows = [{"name": n, "domain": MINI4_NAMES[i % 4], "source_package": ["pkg-a 1.0 (debian)", "pkg-b_2.1_all.deb"][i % 2]}
            for i, n in enumerate(names)]
    (photos / "manifest.json").write_text(json.dumps(rows))
    data = build(photos, tmp_path / "data", seed=0, max_side=64)
    ckpt = tmp_path / "probe.safetensors"
    rtrain(data=str(data), out=str(ckpt), backbone="resnet10t", size=32, batch_size=8, device="cpu")
    res = routing_sources(data=str(data), ckpt=str(ckpt), device="cpu")
    n = {(d, s): len((data / d / f"{d}_{s}.txt").read_text().split()) for d in MINI4_NAMES for s in ("train", "test")}
    assert set(res["sources"]) == {"pkg-a", "pkg-b"}
    assert sum(r["composites"] for r in res["sources"].values()) == sum(n.values())
    # each source holds the composites of its photos' domains only (a: 1st and 3rd domain, b: 2nd and 4th)
    assert {d for d, k in res["sources"]["pkg-a"]["domains"].items() if k} == {MINI4_NAMES[0], MINI4_NAMES[2]}
    pooled = sum(r["accuracy"] * r["composites"] for r in res["sources"].values()) / sum(n.values())
    assert res["accuracy"] == pytest.approx(pooled)
    # a source's domains never seen in training cannot be predicted: every answer is wrong
    assert res["accuracy"] == 0.0
    with pytest.raises(InputError, match="refits a probe head"):
        ft = tmp_path / "ft.safetensors"
        rtrain(data=str(data), out=str(ft), backbone="resnet10t", size=32, steps=1, batch_size=4, device="cpu",
               head="finetune")
        routing_sources(data=str(data), ckpt=str(ft), device="cpu")



def test_routing_sources_sums_up_each_photo_folder(photos12, tmp_path):
    """A benchmark built from two photo folders: each folder's sources pooled and averaged, the
    same numbers as the per-source rows they sum up."""
    import shutil

    from domains.build import MINI4_NAMES, build
    from eval.routability import routing_sources
    from router.train import main as rtrain
    names = sorted(p.stem for p in (photos12 / "images").glob("*.jpg"))
    folders = []
    for k, part in enumerate((names[:6], names[6:])):
        f = tmp_path / f"folder{k}"
        for sub in ("images", "masks"):
            (f / sub).mkdir(parents=True)
            for n in part:
                src = next((photos12 / sub).glob(n + ".*"))
                shutil.copy(src, f / sub / src.name)
        rows = [{"name": n, "domain": MINI4_NAMES[i % 4], "source_package": f"pkg{k}{i % 2}"} for i, n in enumerate(part)]
        (f / "manifest.json").write_text(json.dumps(rows))
        folders.append(f)
    data = build(",".join(map(str, folders)), tmp_path / "data", seed=0, max_side=64)
    ckpt = tmp_path / "probe.safetensors"
    rtrain(data=str(data), out=str(ckpt), backbone="resnet10t", size=32, batch_size=8, device="cpu")
    res = routing_sources(data=str(data), ckpt=str(ckpt), device="cpu")
    assert set(res["sources"]) == {"pkg00", "pkg01", "pkg10", "pkg11"}
    cols = res["collections"]
    assert len(cols) == 2 and sorted(c["sources"] for c in cols.values()) == [2, 2]
    for c, own in zip(sorted(cols), (["pkg00", "pkg01"], ["pkg10", "pkg11"])):
        rows = [res["sources"][s] for s in own]
        n = sum(r["composites"] for r in rows)
        assert cols[c]["composites"] == n
        assert cols[c]["accuracy"] == pytest.approx(sum(r["accuracy"] * r["composites"] for r in rows) / n)
        assert cols[c]["mean_per_source"] == pytest.approx(np.mean([r["accuracy"] for r in rows]))
