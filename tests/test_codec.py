import dataclasses
import datetime as dt
import decimal
import enum
import socket
import uuid
from zoneinfo import ZoneInfo

import pytest

from dotdo import codec
from dotdo.errors import DecodeError, EncodeError


@dataclasses.dataclass
class Point:
    x: int
    y: str = "a"


class Color(enum.Enum):
    RED = "red"


VALUES = [
    None, True, 0, -1, 2**63 - 1, 2**64 - 1, 2**80, -(2**80), 1.5, "text", b"\x00bytes",
    [1, [2]], {"a": {"b": 1}}, {1: "int key"}, (1, (2, 3)), {1, 2}, frozenset({3}),
    dt.datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    dt.datetime(2026, 1, 1, 12), dt.date(2026, 1, 2), dt.time(3, 4, 5),
    dt.timedelta(days=2, seconds=3, microseconds=4), uuid.uuid4(), decimal.Decimal("1.10"),
    Point(1, "b"),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip_keeps_value_and_type(value):
    back = codec.decode(codec.encode(value))
    assert back == value
    assert type(back) is type(value)


def test_zoneinfo_survives():
    value = dt.datetime(2026, 7, 1, tzinfo=ZoneInfo("America/New_York"))
    assert codec.decode(codec.encode(value)).tzinfo == ZoneInfo("America/New_York")


def test_enum_stores_its_value():
    assert codec.decode(codec.encode(Color.RED)) == "red"


@pytest.mark.parametrize("bad", [object(), {"nested": [lambda: 1]}, socket.socket])
def test_unencodable_value_names_its_type(bad):
    with pytest.raises(EncodeError) as info:
        codec.encode(bad)
    assert isinstance(info.value, TypeError)
    assert "cannot store a value of type" in str(info.value)


def test_error_names_the_offending_type():
    with pytest.raises(EncodeError, match="socket.socket"):
        codec.check({"ok": 1, "bad": socket.socket()})


def test_dataclass_from_missing_module_decodes_as_dict():
    data = codec.encode(Point(3))
    patched = data.replace(b"tests.test_codec", b"tests.no_module_")
    assert codec.decode(patched) == {"x": 3, "y": "a"}


def test_garbage_bytes_raise_decode_error():
    with pytest.raises(DecodeError):
        codec.decode(b"\xc1")
    with pytest.raises(DecodeError, match="extension code 99"):
        codec.decode(b"\xd4\x63\x00")


def test_a_stub_of_a_class_unknown_here_is_a_decode_error_that_says_so():
    from dotdo.stub import Stub
    from tests.objects import Counter

    data = codec.encode({"ref": Stub(Counter, "c1")}).replace(b"Counter", b"Nobody1")
    with pytest.raises(DecodeError, match="cannot be rebuilt in this process: .*'Nobody1'") as info:
        codec.decode(data)
    assert "not dotdo msgpack" not in str(info.value)


def test_decoding_never_imports_a_module_named_in_the_bytes():
    import sys

    import msgpack

    # Given bytes that name a dataclass in a module this process has not imported
    module = "this_module_does_not_exist_but_could"
    assert module not in sys.modules and "wave" not in sys.modules
    for name in (module, "wave"):  # wave: a real stdlib module, not imported here
        plain = msgpack.packb([f"{name}:Thing", {"a": 1}], use_bin_type=True)
        data = msgpack.packb(msgpack.ExtType(11, plain), use_bin_type=True)
        # Then it comes back as the dict of its fields, and nothing was imported
        assert codec.decode(data) == {"a": 1}
        assert name not in sys.modules


def test_decoding_never_calls_a_modules_getattr(monkeypatch):
    import sys
    import types

    import msgpack

    # Given an imported module whose __getattr__ would import (a lazy submodule)
    lazy = types.ModuleType("lazy_package_for_codec_test")
    asked = []
    lazy.__getattr__ = lambda name: asked.append(name) or types.ModuleType(name)
    monkeypatch.setitem(sys.modules, lazy.__name__, lazy)
    plain = msgpack.packb([f"{lazy.__name__}:submodule.Thing", {"a": 1}], use_bin_type=True)
    # Then the stored path is looked up in its namespace only
    assert codec.decode(msgpack.packb(msgpack.ExtType(11, plain))) == {"a": 1}
    assert asked == []


def test_a_nested_dataclass_in_an_imported_module_comes_back():
    @dataclasses.dataclass
    class Local:
        a: int

    Point.Inner = Local  # a nested class, as the qualname says
    Local.__qualname__ = "Point.Inner"
    try:
        back = codec.decode(codec.encode(Local(5)))
    finally:
        del Point.Inner
    assert type(back) is Local and back.a == 5


def test_an_encoded_value_is_decoded_only_where_it_arrives():
    # A queue keeps payloads whole: Encoded travels as its bytes and is decoded by the
    # process that unpickles it; encoding it again gives its value's bytes
    import pickle

    value = {"when": dt.date(2026, 12, 3), "tags": {"a", "b"}, "n": 2**70}
    kept = codec.Encoded(codec.encode(value))
    assert pickle.loads(pickle.dumps(kept)) == value
    assert codec.decode(codec.encode({"kept": kept})) == {"kept": value}
    broken = codec.Encoded(b"\xc1")  # not msgpack: it arrives as it was sent
    assert pickle.loads(pickle.dumps(broken)) == broken


def test_a_value_passed_on_is_plain_data_or_stays_encoded():
    plain = {"to": "ada@example.com", "n": [1, 2.5, None, True], "raw": b"\x00"}
    assert codec.passed_on(codec.encode(plain)) == plain
    rich = {"when": dt.date(2026, 12, 3)}
    kept = codec.passed_on(codec.encode(rich))
    assert isinstance(kept, codec.Encoded) and kept == codec.Encoded(codec.encode(rich))
    assert isinstance(codec.passed_on(b"\xc1"), codec.Encoded)
