"""A tour of dotdo: durable objects, their storage, and promise pipelining.

    python examples/pipelining.py

Each account is a durable object: a Ray actor with its own SQLite file. Run the
script twice and the balances carry on from where they were.
"""

from __future__ import annotations

import time

import dotdo


class Account(dotdo.DurableObject):
    """A bank account; its balance lives in storage, so it survives any crash."""

    def __init__(self) -> None:
        self.balance = self.storage.get("balance", 0)

    def deposit(self, amount: int) -> int:
        self.balance += amount
        self.storage.put("balance", self.balance)
        return self.balance

    def summary(self) -> dict:
        return {"id": self.id, "balance": self.balance}


class Ledger(dotdo.DurableObject):
    """Keeps an audit table of its own, with sqlite-utils, in the same file."""

    def record(self, account: str, balance: int) -> int:
        table = self.storage.sql["entries"]
        table.insert({"account": account, "balance": balance, "at": time.time()})
        return table.count

    def last(self, account: str) -> int | None:
        rows = self.storage.sql.query(
            "SELECT balance FROM entries WHERE account = ? ORDER BY rowid DESC LIMIT 1",
            [account],
        )
        return next((row["balance"] for row in rows), None)


def main() -> None:
    settings = dotdo.init()  # optional: the first call would do it
    alice, bob, ledger = dotdo.Account("alice"), dotdo.Account("bob"), dotdo.Ledger("audit")

    # 1. A call returns a promise at once; .result() (or await) waits for it.
    print(f"alice deposits 10 -> balance {alice.deposit(10).result()}")

    # 2. Fan out: 300 deposits go out together, one wait for all of them.
    start = time.perf_counter()
    balances = dotdo.get([bob.deposit(1) for _ in range(300)])
    fanned = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(300):
        bob.deposit(1).result()
    awaited = time.perf_counter() - start
    print(f"300 deposits: fanned out {fanned * 1e3:.0f} ms, awaited one by one "
          f"{awaited * 1e3:.0f} ms ({awaited / fanned:.1f}x); bob has {balances[-1] + 300}")

    # 3. Pipelining: pass a promise, or a field of one, straight into another call.
    #    The ledger receives alice's balance without this script ever waiting for it.
    entries = ledger.record("alice", alice.summary().balance)
    print(f"ledger entries: {entries.result()}, last for alice: {ledger.last('alice').result()}")

    # 4. Bad input is refused with an error that names the fix, and nothing is written.
    try:
        dotdo.Account("")
    except ValueError as exc:
        print(f"refused: {exc}")

    print(f"storage root: {settings.storage} (one SQLite file per object; run me again)")


if __name__ == "__main__":
    main()
