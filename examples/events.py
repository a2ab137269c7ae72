"""Events with on_error: handlers as methods, wildcards, and failures reported.

    python examples/events.py
"""

import time

import dotdo


class Shop(dotdo.DurableObject):
    def place(self, order: str, total: float) -> None:
        dotdo.send("Order.placed", {"order": order, "total": total})

    @dotdo.on.Order.placed
    def reserve_stock(self, event):
        self.storage.put("reserved", self.storage.get("reserved", []) + [event.data["order"]])
        if event.data["total"] > 1000:
            raise ValueError(f"order {event.data['order']} needs a manual check")

    @dotdo.on["*"].placed
    def audit(self, event):
        self.storage.put("audit", self.storage.get("audit", 0) + 1)

    @dotdo.on_error
    def on_failure(self, info):
        self.storage.put("failures", self.storage.get("failures", []) + [
            f"{info.event_type} {info.event_id[:8]}: {info.error}"])

    def report(self) -> dict:
        return {k: self.storage.get(k) for k in ("reserved", "audit", "failures")}


if __name__ == "__main__":
    dotdo.init()
    shop = dotdo.Shop("main")
    shop.place("o-1", 25.0)
    shop.place("o-2", 5000.0)  # its handler fails: the caller never sees it
    while (shop.report().result()["audit"] or 0) < 2:
        time.sleep(0.05)
    for key, value in shop.report().result().items():
        print(f"{key}: {value}")
