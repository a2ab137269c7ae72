"""Misuses of dotdo's public API a type checker must reject. Never run, and left out
of ``make lint``: test_misuse.py runs mypy on it and expects, on each line marked
``# E: <code>``, exactly the errors of those codes, and none elsewhere."""

# Its misuses assign to names nobody reads: the assignment is what mypy checks.
# ruff: noqa: F841

from __future__ import annotations

import dotdo
from actors import Queue


class Account(dotdo.DurableObject):
    def deposit(self, amount: int) -> int:
        return amount

    async def withdraw(self, amount: int, *, note: str = "") -> int:
        return -amount


class Savings(Account):
    def rate(self) -> float:
        return 0.02


class Other(dotdo.DurableObject):
    def deposit(self, amount: int) -> int:
        return amount


def charge(card: str, cents: int) -> dict[str, int]:
    return {card: cents}


async def fetch(url: str) -> bytes:
    return url.encode()


def takes_text(p: dotdo.Promise[str]) -> None: ...


async def calls(alice: dotdo.Stub[Account], savings: dotdo.Stub[Savings]) -> None:
    alice.call(Account.deposit, "ten")  # E: call-overload
    alice.call(Account.deposit)  # E: call-overload
    alice.call(Account.deposit, 1, 2)  # E: call-overload
    alice.call(Account.withdraw, 1, memo="rent")  # E: call-arg
    alice.call(Other.deposit, 1)  # E: call-overload
    alice.call(Savings.rate)  # E: call-overload
    alice.call("deposit", 1)  # E: call-overload
    deposited = await alice.call(Account.deposit, 1)
    text: str = deposited  # E: assignment
    withdrawn = await savings.call(Account.withdraw, 1)
    more: str = withdrawn  # E: assignment
    Queue.stub("emails").call(Queue.count, status=3)  # E: call-overload


def stubs() -> None:
    Account.stub(3)  # E: arg-type
    dotdo.stub(3, "alice")  # E: call-overload
    dotdo.stub(int, "alice")  # E: type-var
    narrow: dotdo.Stub[Savings] = Account.stub("alice")  # E: assignment
    other: dotdo.Stub[Other] = dotdo.stub(Account, "alice")  # E: arg-type


async def promises(p: dotdo.Promise[int], q: dotdo.Promise[str]) -> None:
    p.result() + "x"  # E: operator
    p.result(timeout="soon")  # E: arg-type
    number: int = dotdo.get(q)  # E: assignment
    numbers: list[str] = dotdo.get([p, p])  # E: list-item
    dotdo.get(3)  # E: call-overload
    takes_text(p)  # E: arg-type
    await Account.stub("alice")  # E: misc
    await dotdo.get(p)  # E: misc


async def steps() -> None:
    charged = await dotdo.do(charge, "visa", 100, step_id="charge")
    cents: str = charged  # E: assignment
    fetched = await dotdo.do(fetch, "https://example.com")
    body: str = fetched  # E: assignment
    tried = await dotdo.try_(fetch, "https://example.com", timeout=1.0)
    also: str = tried  # E: assignment
    await dotdo.do(charge, "visa", 100, step_id=7)  # E: call-overload
    await dotdo.do(fetch, "https://example.com", max_retries="3")  # E: call-overload
    await dotdo.try_(fetch, "https://example.com", timeout="soon")  # E: call-overload
    dotdo.do(3)  # E: call-overload


@dotdo.job("nothing")  # E: type-var
def no_payload() -> None: ...


dotdo.job(3)  # E: call-overload


async def waits_misused() -> None:
    await dotdo.sleep("a day")  # E: arg-type
    await dotdo.wait_for_event("Payment.received", match=[7])  # E: arg-type
    late: int = await dotdo.awakeable()  # E: assignment
    await dotdo.run_job("resize", b"png", priorty=5)  # E: call-arg
    flag: str = dotdo.patched("x")  # E: assignment
