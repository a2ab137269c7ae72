"""Stubs: how calls reach durable objects without waiting.

``dotdo.Counter("x")`` is a :class:`Stub`; ``stub.incr(2)`` submits the call at once
and returns a :class:`~dotdo.promise.Promise` of its result.
"""

from __future__ import annotations

from typing import Any

from dotdo import client, codec
from dotdo.errors import NotFoundError
from dotdo.ids import check_id
from dotdo.object import DurableObject, lookup
from dotdo.promise import Promise

__all__ = ["Stub"]


class Stub:
    """A reference to the durable object ``(class, id)``; calling a method submits it.

    Stubs are cheap, compare equal by class and id, can be passed to and returned
    from objects, and can be stored in an object's storage.
    """

    __slots__ = ("_cls", "_id")

    def __init__(self, cls: type[DurableObject], object_id: str) -> None:
        self._cls = cls
        self._id = check_id(object_id)

    @property
    def id(self) -> str:
        """The object's id."""
        return self._id

    @property
    def class_name(self) -> str:
        """The name of the object's class."""
        return self._cls.__name__

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(
                f"{self._cls.__name__} stubs expose public methods only, not {name!r}"
            )
        return _Method(self, name)

    def __reduce__(self):
        return (Stub, (self._cls, self._id))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Stub)
            and other._cls.__name__ == self._cls.__name__
            and other._id == self._id
        )

    def __hash__(self) -> int:
        return hash((self._cls.__name__, self._id))

    def __repr__(self) -> str:
        return f"dotdo.{self._cls.__name__}({self._id!r})"


class _Method:
    __slots__ = ("_stub", "_name")

    def __init__(self, stub: Stub, name: str) -> None:
        self._stub, self._name = stub, name

    def __call__(self, *args: Any, **kwargs: Any) -> Promise:
        stub = self._stub
        return client.submit(stub._cls, stub._id, self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<method {self._name} of {self._stub!r}>"


def _stub_from_plain(plain: list) -> Stub:
    name, object_id = plain
    cls = lookup(name)
    if cls is None:
        raise NotFoundError(
            f"a stored stub names durable object class {name!r}, which is not defined "
            "in this process: import the module that defines it"
        )
    return Stub(cls, object_id)


# Code 12 is persisted: keep it.
codec.register(Stub, 12, lambda s: [s._cls.__name__, s._id], _stub_from_plain)
