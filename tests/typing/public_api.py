"""The types a checker gives dotdo's public API. Never run: ``make lint`` checks this
file with mypy, and each ``assert_type`` fails the check if the type it names is not
the one mypy infers. The misuses it must reject are in misuse.py."""

from __future__ import annotations

import functools
from collections.abc import Coroutine
from typing import Any, assert_type

import dotdo
from actors import Queue


class Account(dotdo.DurableObject):
    def deposit(self, amount: int) -> int:
        return amount

    async def withdraw(self, amount: int, *, note: str = "") -> int:
        return -amount

    def owner(self) -> str:
        return self.id

    def pay(self, to: dotdo.Stub[Account], amount: int) -> dotdo.Promise[int]:
        # A sync method returning a promise: the host awaits it, callers get the int.
        return to.call(Account.deposit, amount)


class Savings(Account):
    def rate(self) -> float:
        return 0.02


def stubs() -> None:
    assert_type(Account.stub("alice"), dotdo.Stub[Account])
    assert_type(dotdo.stub(Account, "alice"), dotdo.Stub[Account])
    assert_type(Savings.stub("s"), dotdo.Stub[Savings])
    # By name, the class is unknown to a checker: untyped stubs.
    assert_type(dotdo.stub("Account", "alice"), dotdo.Stub[Any])
    assert_type(dotdo.Account("alice"), dotdo.Stub[Any])
    # A stub of a subclass is a stub of its base class.
    base: dotdo.Stub[Account] = Savings.stub("s")
    assert_type(base.id, str)
    assert_type(base.class_name, str)


def calls() -> None:
    alice = Account.stub("alice")
    assert_type(alice.call(Account.deposit, 10), dotdo.Promise[int])
    assert_type(alice.call(Account.deposit, amount=10), dotdo.Promise[int])
    assert_type(alice.call(Account.withdraw, 5, note="rent"), dotdo.Promise[int])
    assert_type(alice.call(Account.owner), dotdo.Promise[str])
    assert_type(alice.call(Account.pay, Account.stub("bob"), 3), dotdo.Promise[int])
    # Inherited methods, and the subclass's own.
    savings = Savings.stub("s")
    assert_type(savings.call(Account.deposit, 1), dotdo.Promise[int])
    assert_type(savings.call(Savings.rate), dotdo.Promise[float])
    # The short forms: a promise of anything.
    assert_type(alice.deposit(10), dotdo.Promise[Any])
    assert_type(dotdo.Account("alice").deposit(10), dotdo.Promise[Any])
    # An untyped stub's call is still typed from the method.
    assert_type(dotdo.Account("alice").call(Account.deposit, 10), dotdo.Promise[int])


def promises(p: dotdo.Promise[int], q: dotdo.Promise[str]) -> None:
    assert_type(p.result(), int)
    assert_type(p.result(timeout=1.5), int)
    assert_type(p.done(), bool)
    # Projections and calls on the value: anything.
    assert_type(p["key"], dotdo.Promise[Any])
    assert_type(p.field, dotdo.Promise[Any])
    assert_type(p.field.method(1), dotdo.Promise[Any])
    assert_type(dotdo.get(p), int)
    assert_type(dotdo.get(p, timeout=2.0), int)
    assert_type(dotdo.get([p, p]), list[int])
    assert_type(dotdo.get(x for x in (p, p)), list[int])
    assert_type(dotdo.get((p, q)), list[int | str])
    assert_type(dotdo.get((p, q, p)), list[int | str])
    # A promise of an int is a promise of an object.
    wider: dotdo.Promise[object] = p
    assert_type(wider.result(), object)


async def awaiting(p: dotdo.Promise[int]) -> None:
    assert_type(await p, int)
    assert_type(await Account.stub("a").call(Account.withdraw, 1), int)
    assert_type(await Account.stub("a").call(Account.pay, Account.stub("b"), 1), int)


def charge(card: str, cents: int) -> dict[str, int]:
    return {card: cents}


async def fetch(url: str) -> bytes:
    return url.encode()


async def steps() -> None:
    alice = Account.stub("alice")
    assert_type(await dotdo.do(charge, "visa", 100, step_id="charge"), dict[str, int])
    assert_type(await dotdo.do(fetch, "https://example.com", max_retries=3), bytes)
    assert_type(await dotdo.do(lambda: fetch("https://example.com"), step_id="f"), bytes)
    assert_type(await dotdo.do(functools.partial(charge, "visa", 100)), dict[str, int])
    # A function returning a promise: do awaits it.
    assert_type(await dotdo.do(lambda: alice.call(Account.deposit, 1), step_id="d"), int)
    assert_type(await dotdo.try_(fetch, "https://example.com", timeout=2.0), bytes)
    assert_type(await dotdo.try_(charge, "visa", 1), dict[str, int])


@dotdo.job("email")
async def send_email(payload: dict[str, str]) -> str:
    return payload["to"]


@dotdo.job("resize")
def resize(payload: bytes) -> int:
    return len(payload)


def jobs() -> None:
    # The decorator gives the handler back as it was.
    sending = assert_type(send_email({"to": "a@example.com"}), Coroutine[Any, Any, str])
    sending.close()
    assert_type(resize(b"png"), int)
    handlers = dotdo.job({"resize": resize})
    assert_type(handlers["resize"](b"png"), int)


async def queues() -> None:
    emails = Queue.stub("emails")
    assert_type(emails, dotdo.Stub[Queue])
    assert_type(dotdo.stub(Queue, "emails"), dotdo.Stub[Queue])
    assert_type(emails.call(Queue.result, "job-1"), dotdo.Promise[dict[str, Any] | None])
    assert_type(emails.call(Queue.count, status="pending"), dotdo.Promise[int])
    assert_type(await emails.call(Queue.wait, "job-1", timeout=5.0), dict[str, Any])


async def durable_waits() -> None:
    # Inside a job handler: each wait's answer keeps its type.
    assert_type(await dotdo.sleep(60), None)
    assert_type(await dotdo.sleep_until(1_900_000_000.0), None)
    event = assert_type(await dotdo.wait_for_event("Payment.received", match={"order": 7},
                                                   timeout=86_400), dotdo.Event)
    assert_type(event.data, Any)
    token = assert_type(await dotdo.awakeable(), str)
    assert_type(await dotdo.wait(token, timeout=3600), Any)
    assert_type(dotdo.resolve(token, {"approved": True}), dotdo.Promise[None])
    assert_type(dotdo.reject(token, "refused"), dotdo.Promise[None])
    assert_type(await dotdo.run_job("resize", b"png", queue="images", priority=5), Any)
    assert_type(dotdo.patched("free-shipping"), bool)
