"""dotdo.do: durable, with retries and backoff; with step_id, replay-safe.

    python examples/do.py

The payment provider fails twice before it accepts; `do` retries it. Charging the
same order again returns the journaled result: the card is charged once.
"""

import dotdo

ATTEMPTS = {"n": 0}


def charge_card(order: str, amount: float) -> dict:
    ATTEMPTS["n"] += 1
    if ATTEMPTS["n"] < 3:
        raise ConnectionError(f"provider timeout (attempt {ATTEMPTS['n']})")
    return {"order": order, "amount": amount, "charge_id": f"ch_{order}"}


class Payments(dotdo.DurableObject):
    async def charge(self, order: str, amount: float) -> dict:
        return await dotdo.do(
            charge_card, order, amount,
            step_id=f"charge-{order}", max_retries=5, backoff=0.1,
        )

    def attempts(self, order: str) -> list:
        return self.storage.journal.attempts(f"charge-{order}")

    async def refuse(self) -> str:
        def declined():
            raise dotdo.TerminalError("card declined")  # no point retrying

        try:
            await dotdo.do(declined)
        except dotdo.TerminalError as exc:
            return f"stopped after {exc.attempts} attempt: {exc}"


if __name__ == "__main__":
    dotdo.init()
    payments = dotdo.Payments("shop")
    print("first call :", payments.charge("o-42", 19.5).result())
    print("second call:", payments.charge("o-42", 19.5).result(), "(from the journal)")
    for a in payments.attempts("o-42").result():
        print(f"  attempt {a['attempt']}: {a['error'] or 'ok'}")
    print("terminal   :", payments.refuse().result())
