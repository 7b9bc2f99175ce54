import numpy as np
import pytest
import torch
from PIL import Image

from common.io import InputError, read_image
from domains.build import MINI4_NAMES
from router import Harmonizer


def test_api_types_and_modes(tiny_zoo, pair):
    h = Harmonizer.from_zoo(tiny_zoo)
    img, mask = pair
    probs = h.classify(img, mask)
    assert set(probs) == set(MINI4_NAMES) and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    out = h(img, mask)
    assert isinstance(out, Image.Image) and out.size == Image.open(img).size
    arr, marr = np.asarray(Image.open(img).convert("RGB")), np.asarray(Image.open(mask))
    a = h(arr, marr, mode="unified")
    assert isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.shape == arr.shape
    t = h(read_image(img), torch.from_numpy(marr / 255.0).float()[None], mode="oracle:MiniFlickr")
    assert torch.is_tensor(t) and t.shape == (3, *arr.shape[:2])
    bg = marr < 128
    assert np.abs(a[bg].astype(int) - arr[bg].astype(int)).max() <= 1  # background kept
    r = h.run(img, mask, mode="routed")
    assert r.domain == r.model == max(probs, key=probs.get) and isinstance(r.output, Image.Image)
    with pytest.raises(InputError, match="no harmonizer for 'Nope'"):
        h(img, mask, mode="oracle:Nope")
    with pytest.raises(InputError, match="mode must be"):
        h(img, mask, mode="best")
    with pytest.raises(InputError, match="--strength must be a number >= 0"):  # checked at the API's door
        h(img, mask, strength=-0.5)


def test_soft_routing_blends_by_probability(tiny_zoo, pair):
    from harmonizers.fullres import harmonize
    from router.api import Blend
    h = Harmonizer.from_zoo(tiny_zoo)
    img, m = read_image(pair[0]), read_image(pair[1])[:1]
    r = h.run(str(pair[0]), str(pair[1]), "soft")
    assert r.model == "soft" and set(r.weights) == set(MINI4_NAMES)
    assert r.domain == max(r.probabilities, key=r.probabilities.get)
    assert sum(r.weights.values()) == pytest.approx(1.0)
    assert r.weights == pytest.approx(r.probabilities)  # every domain has a model: the probabilities
    # one-hot probabilities: the blend is that domain's model
    name, blend, _ = h.select("soft", {"MiniCOCO": 0.0, "MiniAdobe": 1.0, "MiniFlickr": 0.0, "MiniDay2night": 0.0})
    assert name == "soft" and torch.allclose(harmonize(blend, img, m), harmonize(h.models["MiniAdobe"], img, m),
                                             atol=1e-6)
    # the blend of outputs at the network size is the weighted sum of the members' outputs
    x, mm = torch.rand(1, 3, 32, 32), (torch.rand(1, 1, 32, 32) > 0.5).float()
    b = Blend({"MiniCOCO": h.models["MiniCOCO"], "MiniFlickr": h.models["MiniFlickr"]}, {"MiniCOCO": 0.3, "MiniFlickr": 0.7})
    with torch.no_grad():
        want = 0.3 * h.models["MiniCOCO"](x, mm) + 0.7 * h.models["MiniFlickr"](x, mm)
        assert torch.allclose(b(x, mm), want, atol=1e-6)
    with pytest.raises(InputError, match="routed, soft, unified"):
        h.select("blend", r.probabilities)
