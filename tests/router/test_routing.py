import pytest

from common.io import InputError


def test_routing_rules():
    from router.routing import choose, soft_weights
    assert soft_weights({"a": 0.5, "b": 0.3, "c": 0.2}, ["a", "b"]) == pytest.approx({"a": 0.625, "b": 0.375})
    assert soft_weights({"a": 0.0, "c": 1.0}, ["a"]) == {}
    probs = {"a": 0.2, "b": 0.7, "c": 0.1}
    assert choose("routed", probs, ["a", "c"], True) == ("a", {"a": 1.0})  # most likely that has a model
    assert choose("routed", probs, [], True) == ("unified", {"unified": 1.0})
    assert choose("soft", {"a": 0.0, "b": 1.0}, ["a"], True) == ("a", {"a": 1.0})  # no weight to blend: as routed
    assert choose("soft", probs, ["a", "b"], False)[0] == "soft"
    assert choose("oracle:c", probs, ["c"], False) == ("c", {"c": 1.0})
    with pytest.raises(InputError, match="no unified model"):
        choose("unified", probs, ["a"], False)
    with pytest.raises(InputError, match="no harmonizer for any predicted domain"):
        choose("routed", probs, [], False)
