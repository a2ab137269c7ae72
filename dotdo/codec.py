"""msgpack with a few extensions: the only format dotdo persists.

Nothing persisted is ever unpickled. Besides msgpack's own types (None, bool, int,
float, str, bytes, list, dict) these round-trip: ``datetime`` (with its offset, and
its ``ZoneInfo`` key when it has one), ``date``, ``time``, ``timedelta``, ``UUID``,
``Decimal``, ``set``, ``frozenset``, ``tuple``, integers beyond 64 bits, and
dataclass instances. Enum members store as their value. Other modules add their
own types with :func:`register` (stubs do, so an object can store a reference to
another object).

A dataclass is stored by its import path and fields. Reading it back never imports
anything: stored bytes must not make a process run a module's code. The class is
taken from a module the reading process has imported already (the object's own
module, the handlers' modules its App or Worker imported); otherwise, or if the
class is gone, the value comes back as a plain ``dict`` of its fields.

A process that only keeps or shows values (a queue holding payloads, the operations
layer) decodes them with ``decode(data, lenient=True)``: a value it cannot rebuild (a
stub of a class it has not imported, an extension from a newer dotdo) comes back as
an :class:`Undecoded` placeholder instead of an error. A placeholder encodes back to
the very bytes it came from, and is decoded again in the process that unpickles it
(a driver receiving a job from the queue), so passing values through loses nothing.
A process that does not even look inside a value keeps it whole as :class:`Encoded`
(the queue's answers carry payloads so): decoded only where it arrives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import sys
import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import msgpack

from dotdo.errors import DecodeError, DotdoError, EncodeError

__all__ = ["encode", "decode", "check", "register", "Undecoded", "Encoded", "passed_on"]

_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1

# Extension codes are persisted: never renumber them.
_DATETIME, _DATE, _TIME, _TIMEDELTA, _UUID, _DECIMAL = 1, 2, 3, 4, 5, 6
_SET, _FROZENSET, _TUPLE, _BIGINT, _DATACLASS = 7, 8, 9, 10, 11

_encoders: dict[type, tuple[int, Callable[[Any], Any]]] = {}
_decoders: dict[int, Callable[[Any], Any]] = {}


def register(
    cls: type, code: int, to_plain: Callable[[Any], Any], from_plain: Callable[[Any], Any]
) -> None:
    """Teach the codec a type: ``to_plain`` turns it into encodable data, ``from_plain`` back.

    Codes 0-31 are dotdo's; a code may be registered only once.
    """
    if code in _decoders and _encoders.get(cls, (None,))[0] != code:
        raise ValueError(f"msgpack extension code {code} is already registered")
    _encoders[cls] = (code, to_plain)
    _decoders[code] = from_plain


def _tz_plain(value: dt.datetime | dt.time) -> str | None:
    tz = value.tzinfo
    return tz.key if isinstance(tz, ZoneInfo) else None


def _datetime_from(plain: list) -> dt.datetime:
    iso, zone = plain
    value = dt.datetime.fromisoformat(iso)
    return value.astimezone(ZoneInfo(zone)) if zone else value


def _dataclass_from(plain: list) -> Any:
    path, fields = plain
    module, _, qualname = path.partition(":")
    cls: Any = sys.modules.get(module)  # never imported on the word of stored bytes
    for part in qualname.split("."):
        # The namespace, not getattr: a module's __getattr__ may import (lazy submodules).
        cls = getattr(cls, "__dict__", {}).get(part)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return fields
    obj = cls.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


register(dt.datetime, _DATETIME, lambda v: [v.isoformat(), _tz_plain(v)], _datetime_from)
register(dt.date, _DATE, lambda v: v.isoformat(), dt.date.fromisoformat)
register(dt.time, _TIME, lambda v: v.isoformat(), dt.time.fromisoformat)
register(
    dt.timedelta,
    _TIMEDELTA,
    lambda v: [v.days, v.seconds, v.microseconds],
    lambda p: dt.timedelta(days=p[0], seconds=p[1], microseconds=p[2]),
)
register(uuid.UUID, _UUID, lambda v: v.bytes, lambda p: uuid.UUID(bytes=p))
register(decimal.Decimal, _DECIMAL, str, decimal.Decimal)
register(set, _SET, list, set)
register(frozenset, _FROZENSET, list, frozenset)
register(tuple, _TUPLE, list, tuple)
register(int, _BIGINT, str, int)


class Undecoded:
    """A stored value this process cannot rebuild, kept as its msgpack extension
    (``code``, ``data``) with the ``reason``. It encodes back to the same bytes, and
    a process that unpickles it decodes it again (see the module docstring)."""

    __slots__ = ("code", "data", "reason")

    def __init__(self, code: int, data: bytes, reason: str) -> None:
        self.code, self.data, self.reason = code, data, reason

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_revive, (self.code, self.data, self.reason))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Undecoded) and other.code == self.code
                and other.data == self.data)

    def __hash__(self) -> int:
        return hash((self.code, self.data))

    def __repr__(self) -> str:
        return f"<undecoded value: {self.reason}>"


class Encoded:
    """A whole value kept encoded by a process that passes it on without rebuilding it
    (a queue returning a job's payload). It travels as its bytes and is decoded
    (leniently) in the process that unpickles it, with that process's classes; here
    it encodes back to those bytes' value."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_arrived, (self.data,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Encoded) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"<encoded value, {len(self.data)} bytes>"


def _arrived(data: bytes) -> Any:
    """An :class:`Encoded` arriving in another process: its value, as this one reads it."""
    try:
        return decode(data, lenient=True)
    except DecodeError:  # unpickling must not fail: keep it as it came
        return Encoded(data)


class _HasExtension(Exception):
    pass


def _refuse_extension(code: int, data: bytes) -> Any:
    raise _HasExtension


def passed_on(data: bytes) -> Any:
    """Stored bytes as a process that passes them on without rebuilding them answers
    with them: the value itself if it holds only msgpack's own types (cheap to send,
    nothing to rebuild), else :class:`Encoded` (decoded where it arrives)."""
    try:
        return _unpack(data, ext_hook=_refuse_extension)
    except _HasExtension:
        return Encoded(data)
    except Exception:  # noqa: BLE001 - not msgpack: the receiver says so when it decodes
        return Encoded(data)


def _revive(code: int, data: bytes, reason: str) -> Any:
    """An :class:`Undecoded` arriving in another process: rebuilt if this one can."""
    try:
        return _decode_ext(code, data, lenient=True)
    except Exception:  # noqa: BLE001 - unpickling must not fail: keep it as it came
        return Undecoded(code, data, reason)


_NATIVE: tuple[type[Any], ...] = (bool, int, float, str, bytes, dict, list)


def _default(value: Any) -> Any:
    cls = type(value)
    if cls is Undecoded:  # passed through: the bytes it came as
        return msgpack.ExtType(value.code, value.data)
    if cls is Encoded:  # its value as this process reads it (a stub it lacks stays one)
        return decode(value.data, lenient=True)
    entry = _encoders.get(cls)
    if isinstance(value, enum.Enum):
        return value.value
    if entry is None and cls not in _NATIVE:
        # str/int/dict subclasses (StrEnum, IntEnum, OrderedDict) store as their base.
        for base in _NATIVE:
            if isinstance(value, base):
                return base(value)
    if entry is None:
        for base in cls.__mro__[1:]:
            entry = _encoders.get(base)
            if entry is not None:
                break
    if entry is not None:
        code, to_plain = entry
        return msgpack.ExtType(code, _pack(to_plain(value)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        path = f"{cls.__module__}:{cls.__qualname__}"
        return msgpack.ExtType(_DATACLASS, _pack([path, fields]))
    raise EncodeError(
        f"cannot store a value of type {cls.__module__}.{cls.__qualname__}: dotdo stores "
        "msgpack (None, bool, int, float, str, bytes, list, dict, tuple, set, datetime, "
        "date, time, timedelta, UUID, Decimal, dataclasses). Convert it to one of those "
        "first, for example to a dict or a str."
    )


def _decode_ext(code: int, data: bytes, lenient: bool) -> Any:
    from_plain = _DATACLASS_DECODER if code == _DATACLASS else _decoders.get(code)
    if from_plain is None:
        if lenient:
            return Undecoded(code, data, f"msgpack extension {code} is unknown to this "
                             "dotdo (written by a newer one?)")
        raise DecodeError(f"unknown msgpack extension code {code}: written by a newer dotdo?")
    plain = _unpack(data, lenient)
    if not lenient:
        return from_plain(plain)
    try:
        return from_plain(plain)
    except Exception as exc:  # noqa: BLE001 - kept as it is, with why
        return Undecoded(code, data, str(exc))


def _ext_hook(code: int, data: bytes) -> Any:
    return _decode_ext(code, data, lenient=False)


def _lenient_hook(code: int, data: bytes) -> Any:
    return _decode_ext(code, data, lenient=True)


_DATACLASS_DECODER = _dataclass_from


def _pack(value: Any) -> bytes:
    # strict_types routes tuples and int/str subclasses through _default, so tuples
    # round-trip and big ints get a type of their own.
    return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)


def _unpack(data: bytes, lenient: bool = False,
            ext_hook: Callable[[int, bytes], Any] | None = None) -> Any:
    hook = ext_hook or (_lenient_hook if lenient else _ext_hook)
    return msgpack.unpackb(data, ext_hook=hook, raw=False, strict_map_key=False)


def encode(value: Any) -> bytes:
    """Encode ``value`` as msgpack bytes, or raise :class:`EncodeError` naming its type."""
    try:
        return _pack(value)
    except EncodeError:
        raise
    except OverflowError:
        raise EncodeError("an integer is too large to store") from None
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"cannot store this value: {exc}") from None


def decode(data: bytes, lenient: bool = False) -> Any:
    """Decode bytes written by :func:`encode`. ``lenient``: a value this process
    cannot rebuild becomes an :class:`Undecoded` instead of an error (bytes that are
    not msgpack at all still raise :class:`DecodeError`)."""
    try:
        return _unpack(data, lenient)
    except DecodeError:
        raise
    except DotdoError as exc:  # the bytes are fine: a value in them is unknown here
        raise DecodeError(f"a stored value cannot be rebuilt in this process: {exc}") from exc
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise DecodeError(f"stored bytes are not dotdo msgpack: {exc}") from exc


def check(value: Any) -> None:
    """Raise :class:`EncodeError` if ``value`` cannot be stored; write nothing."""
    encode(value)
