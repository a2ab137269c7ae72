"""The class registry behind ``dotdo.<ClassName>(id)`` (no Ray needed)."""

import warnings

import pytest

import dotdo
from dotdo.object import known_names, lookup, public_methods


def test_subclass_registers_by_name():
    class Registered(dotdo.DurableObject):
        def ping(self):
            return "pong"

    assert lookup("Registered") is Registered
    assert "Registered" in known_names()
    stub = dotdo.Registered("a")
    assert stub == dotdo.stub("Registered", "a") == dotdo.stub(Registered, "a")
    assert repr(stub) == "dotdo.Registered('a')"


def test_public_methods_exclude_private_and_base_names():
    class Methods(dotdo.DurableObject):
        def visible(self):
            pass

        async def also_visible(self):
            pass

        def _hidden(self):
            pass

    assert public_methods(Methods) == ["also_visible", "visible"]


def test_same_name_from_another_module_warns():
    first = type("Twin", (dotdo.DurableObject,), {"__module__": "one"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = type("Twin", (dotdo.DurableObject,), {"__module__": "two"})
    assert lookup("Twin") is second and first is not second
    assert any("addressed by class name" in str(w.message) for w in caught)


def test_unknown_name_is_an_attribute_error_listing_known():
    class Listed(dotdo.DurableObject):  # its own class: no test relies on another's
        pass

    with pytest.raises(AttributeError, match="known: .*Listed"):
        dotdo.stub("NoSuchThing", "x")
    with pytest.raises(AttributeError):
        dotdo._private_name  # noqa: B018


def test_own_process_and_a_pool_contradict_each_other():
    with pytest.raises(dotdo.ConfigError, match="own_process=True and a Pooled hosting"):
        type("Lonely", (dotdo.DurableObject,), {}, own_process=True, hosting=dotdo.Pooled())
