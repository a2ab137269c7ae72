"""dotdo.try_: one attempt, optionally with a timeout; raises, never retries.

    python examples/try_.py
"""

import asyncio

import dotdo


async def fetch_price(sku: str, delay: float) -> float:
    await asyncio.sleep(delay)  # stands in for an HTTP call
    if sku == "unknown":
        raise LookupError(f"no price for {sku}")
    return 9.99


class Checkout(dotdo.DurableObject):
    async def quote(self, sku: str, delay: float) -> str:
        try:
            price = await dotdo.try_(fetch_price, sku, delay, timeout=0.5)
        except TimeoutError:
            return f"{sku}: the price service is slow, try again"
        except LookupError as exc:
            return f"{sku}: {exc}"
        return f"{sku}: {price}"


async def main() -> None:
    # In driver code try_ runs here, in this process.
    print("driver:", await dotdo.try_(fetch_price, "book", 0.01, timeout=1))
    # Inside an object it runs there, acting for that object.
    checkout = dotdo.Checkout("web")
    for sku, delay in [("book", 0.01), ("lamp", 2.0), ("unknown", 0.01)]:
        print("object:", await checkout.quote(sku, delay))


if __name__ == "__main__":
    dotdo.init()
    asyncio.run(main())
