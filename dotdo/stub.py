"""Stubs: how calls reach durable objects without waiting.

``dotdo.Counter("x")`` is a :class:`Stub`; ``stub.incr(2)`` submits the call at once
and returns a :class:`~dotdo.promise.Promise` of its result. ``Counter.stub("x")``
is the same stub typed ``Stub[Counter]``, whose ``stub.call(Counter.incr, 2)`` a
type checker checks against the method's signature (a ``Promise[int]``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from dotdo import client, codec
from dotdo.errors import MethodNotFoundError, NotFoundError
from dotdo.ids import check_id
from dotdo.object import DurableObject, lookup, set_stub_class
from dotdo.promise import Promise

__all__ = ["Stub"]

D_co = TypeVar("D_co", bound=DurableObject, covariant=True)
P = ParamSpec("P")
R = TypeVar("R")


class Stub(Generic[D_co]):
    """A reference to the durable object ``(class, id)``; calling a method submits it.

    Stubs are cheap, compare equal by class and id, can be passed to and returned
    from objects, and can be stored in an object's storage. ``Stub[Account]`` is a
    stub of an ``Account``: ``stub.call(Account.deposit, 10)`` is typed from the
    method, while ``stub.deposit(10)`` is a ``Promise[Any]``.
    """

    __slots__ = ("_cls", "_id")

    def __init__(self, cls: type[D_co], object_id: str) -> None:
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

    # What the host gives back is the method's result, awaited once if awaitable: an
    # async method's coroutine, or a promise a sync method got from another object.
    # (Coroutine, not Awaitable: then mypy matches an async method's type, Any in it
    # or not, to the first overload alone, instead of finding the call ambiguous.)
    @overload
    def call(self, method: Callable[Concatenate[D_co, P], Coroutine[Any, Any, R]], /,
             *args: P.args, **kwargs: P.kwargs) -> Promise[R]: ...
    @overload
    def call(self, method: Callable[Concatenate[D_co, P], Promise[R]], /,
             *args: P.args, **kwargs: P.kwargs) -> Promise[R]: ...
    @overload
    def call(self, method: Callable[Concatenate[D_co, P], R], /,
             *args: P.args, **kwargs: P.kwargs) -> Promise[R]: ...

    def call(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Promise[Any]:
        """``stub.call(Account.deposit, 10)``: submit the method (given unbound, from
        the class) by its name, as ``stub.deposit(10)`` does, so that a type checker
        checks the arguments and knows the result's type."""
        return client.submit(self._cls, self._id, _name_of(self._cls, method), args, kwargs)

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


def _name_of(cls: type[DurableObject], method: Callable[..., Any]) -> str:
    """The name ``stub.call`` sends for ``method``, which must be a public method of
    ``cls`` (its own or inherited), not another class's method of the same name."""
    name = getattr(method, "__name__", None)
    if (not isinstance(name, str) or name.startswith("_")
            or not (getattr(cls, name, None) == method
                    or any(vars(klass).get(name) is method for klass in cls.__mro__))):
        raise MethodNotFoundError(
            f"stub.call takes a public method of {cls.__name__}, unbound, as in "
            f"stub.call({cls.__name__}.method_name, *args), not {method!r}"
        )
    return name


class _Method:
    __slots__ = ("_stub", "_name")

    def __init__(self, stub: Stub[Any], name: str) -> None:
        self._stub, self._name = stub, name

    def __call__(self, *args: Any, **kwargs: Any) -> Promise[Any]:
        stub = self._stub
        return client.submit(stub._cls, stub._id, self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<method {self._name} of {self._stub!r}>"


def _stub_from_plain(plain: list) -> Stub[Any]:
    name, object_id = plain
    cls = lookup(name)
    if cls is None:
        raise NotFoundError(
            f"a stored stub names durable object class {name!r}, which is not defined "
            "in this process: import the module that defines it"
        )
    return Stub(cls, object_id)


set_stub_class(Stub)  # what DurableObject.stub makes

# Code 12 is persisted: keep it.
codec.register(Stub, 12, lambda s: [s._cls.__name__, s._id], _stub_from_plain)
