"""``delivery`` in metadata (README "Durability"): validated and normalized like the TS runtime does."""
import pytest

from topo import Metadata
from topo.metadata import InvalidMetadataError, validate_metadata


def test_keeps_at_least_once_streams_only_sorted():
    m = Metadata(name="c", istreams=["b", "a"], ostreams=["z"], delivery={"z": "at-least-once", "a": "at-least-once", "b": "at-most-once"})
    assert m.to_dict()["delivery"] == {"a": "at-least-once", "z": "at-least-once"}
    assert list(m.to_dict()["delivery"]) == ["a", "z"]


def test_all_at_most_once_leaves_no_delivery_field():
    assert "delivery" not in validate_metadata({"name": "c", "istreams": ["a"], "ostreams": [], "delivery": {"a": "at-most-once"}})


@pytest.mark.parametrize("delivery,path", [
    ({"a": "exactly-once"}, "delivery.a"),
    ({"nope": "at-least-once"}, "delivery.nope"),
    ("at-least-once", "delivery"),
])
def test_refuses_bad_delivery_naming_the_field(delivery, path):
    with pytest.raises(InvalidMetadataError) as e:
        validate_metadata({"name": "c", "istreams": ["a"], "ostreams": [], "delivery": delivery})
    assert path in str(e.value)
