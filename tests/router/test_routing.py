import pytest

from common.io import InputError


def test_routing_rules():
    from router.routing import choose, soft_weights
    assert soft_weights({"a": 0.5, "b": 0.3, "c": 0.2}, ["a", "b"]) == pytest.approx({"a": 0.625, "b": 0.375})
    assert soft_weights({"a": 0.0, "c": 1.0}, ["a"]) == {}
    probs = {"a": 0.2, "b": 0.7, "c": 0.1}
    assert choose("routed", probs, {"a": 64, "c": 64}, True) == ("a", {"a": 1.0})  # most likely that has a model
    assert choose("routed", probs, {}, True) == ("unified", {"unified": 1.0})
    assert choose("soft", {"a": 0.0, "b": 1.0}, {"a": 64}, True) == ("a", {"a": 1.0})  # no weight to blend: as routed
    assert choose("soft", probs, {"a": 64, "b": 64}, False) == ("soft", pytest.approx({"a": 2 / 9, "b": 7 / 9}))
    assert choose("oracle:c", probs, {"c": 256}, False) == ("c", {"c": 1.0})
    with pytest.raises(InputError, match=r"soft routing needs harmonizers of one training size, the zoo has \[64, 256\]"):
        choose("soft", probs, {"a": 64, "b": 256}, True)
    assert choose("routed", probs, {"a": 64, "b": 256}, True) == ("b", {"b": 1.0})   # one model: any size
    with pytest.raises(InputError, match="no unified model"):
        choose("unified", probs, {"a": 64}, False)
    with pytest.raises(InputError, match="no harmonizer for any predicted domain"):
        choose("routed", probs, {}, False)


def test_zoo_default_mode_rules():
    from router.routing import check_zoo_mode, default_mode
    assert default_mode([64, 64, 64], True) == "soft"      # members of one size blend
    assert default_mode([64, 256], True) == "routed"       # a blend needs one size
    assert default_mode([64], False) == "routed"           # one domain model: nothing to blend
    assert default_mode([], True) == "unified"
    assert check_zoo_mode("soft", [64, 64], False, "z.json") == "soft"
    with pytest.raises(InputError, match=r"z.json: mode 'soft': soft routing needs harmonizers of one training size.*\[64, 256\]"):
        check_zoo_mode("soft", [64, 256], True, "z.json")
    with pytest.raises(InputError, match="z.json: mode 'unified' but the zoo has no unified model"):
        check_zoo_mode("unified", [64], False, "z.json")
    with pytest.raises(InputError, match="z.json: mode must be one of"):
        check_zoo_mode("oracle:a", [64], True, "z.json")
