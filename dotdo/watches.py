"""The App's record of jobs waiting for events (``dotdo.wait_for_event``) and of the
matches it owes their queues, in two tables of the App's own file.

A wait is registered by the job's queue before the job parks (``App.watch_event``):
the event type, the items the data must hold, where the job is (queue, job id, the
run's uid, the point's key) and when the wait began. An event *matches* a wait when
its type is the wait's and its data is a dict holding every item of the wait's
``match`` (``{}``: any data). Items compare as values: ``7`` and ``7.0`` are the
same, ``True`` and ``1`` are not; a nested dict or list must be equal as a whole.

An event matches only waits that began before it was sent: events the App receives
(a driver's ``send``, the HTTP API, the command, a queue's Job events) are matched as
the App journals them, against the waits it has then; events sent inside objects and
job handlers reach the App from their object a moment later and match the waits
that began at or before their ``created`` time (the sender's clock against the App's:
on a cluster, a skew between machines moves that line by as much). An event sent
before a wait began never wakes it.

A match deletes the wait and writes a *delivery* (the event, for the job's point) in
one transaction; the App sends deliveries to their queues and deletes each once the
queue took it. The queue ends a point once: a delivery that comes again, or after the
wait timed out, changes nothing.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from dotdo import codec
from dotdo.errors import DecodeError

if TYPE_CHECKING:
    from dotdo.storage.kv import Storage

__all__ = ["EventWaits", "Delivery", "MIGRATIONS", "item_key", "holds"]

# The run's uid is NULL for jobs enqueued before runs had one: '' here, so that the
# primary key still tells waits apart (SQLite lets NULLs repeat in a key).
CREATE_WAITS = """
CREATE TABLE event_waits (
    queue   TEXT NOT NULL,
    uid     TEXT NOT NULL,
    key     TEXT NOT NULL,
    job_id  TEXT NOT NULL,
    type    TEXT NOT NULL,
    item    TEXT,
    match   BLOB NOT NULL,
    since   REAL NOT NULL,
    PRIMARY KEY (queue, uid, key)
) WITHOUT ROWID"""
# ``item``: one item of the match (see item_key), or NULL if it has none to look up
# by; an event's candidates are the waits of its type whose item it holds.
CREATE_WAITS_INDEX = "CREATE INDEX event_waits_by_item ON event_waits (type, item)"
CREATE_DELIVERIES = """
CREATE TABLE event_deliveries (
    seq     INTEGER PRIMARY KEY,
    queue   TEXT NOT NULL,
    job_id  TEXT NOT NULL,
    uid     TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   BLOB NOT NULL
)"""


def _tables_v1(db: Any) -> None:
    db.execute(CREATE_WAITS)
    db.execute(CREATE_WAITS_INDEX)
    db.execute(CREATE_DELIVERIES)


# ``Storage.migrate("event_waits", MIGRATIONS)``: MIGRATIONS[n] takes the tables from
# version n to n + 1.
MIGRATIONS = {0: _tables_v1}

SELECT_WAIT_TYPE = "SELECT type, item FROM event_waits WHERE queue = ? AND uid = ? AND key = ?"
# A wait registered again (its queue asking again after a crash) keeps when it began.
UPSERT_WAIT = (
    "INSERT INTO event_waits (queue, uid, key, job_id, type, item, match, since) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (queue, uid, key) DO UPDATE SET "
    "job_id = excluded.job_id, type = excluded.type, item = excluded.item, "
    "match = excluded.match"
)
DELETE_WAIT = "DELETE FROM event_waits WHERE queue = ? AND uid = ? AND key = ?"
COUNT_BY_ITEM = "SELECT type, item, COUNT(*) FROM event_waits GROUP BY type, item"
# Two lookups, each along the index: the waits with no item, then those whose item the
# event's data holds (items as one JSON array, so one statement serves any count).
SELECT_CANDIDATES = (
    "SELECT queue, uid, key, job_id, match, item FROM event_waits "
    "WHERE type = ? AND item IS NULL AND since <= ? "
    "UNION ALL SELECT queue, uid, key, job_id, match, item FROM event_waits "
    "WHERE type = ? AND item IN (SELECT value FROM json_each(?)) AND since <= ?"
)
SELECT_WAITS = (
    "SELECT queue, job_id, uid, key, type, match, since FROM event_waits "
    "ORDER BY since, queue, uid, key LIMIT ?"
)
INSERT_DELIVERY = (
    "INSERT INTO event_deliveries (queue, job_id, uid, key, value) VALUES (?, ?, ?, ?, ?)"
)
# Those of queues not skipped (queues that did not answer wait out their backoff).
SELECT_DELIVERIES = (
    "SELECT seq, queue, job_id, uid, key, value FROM event_deliveries "
    "WHERE queue NOT IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?"
)
DELETE_DELIVERIES = "DELETE FROM event_deliveries WHERE seq IN (SELECT value FROM json_each(?))"
ANY_DELIVERY = "SELECT 1 FROM event_deliveries LIMIT 1"

# Past this many types waited for, the App tells senders "any" instead of the list.
MAX_LISTED_TYPES = 1_000

Delivery = tuple[int, str, str, str | None, str, bytes]  # seq, queue, job id, uid, key, value


def _plain(value: Any) -> Any:
    """A scalar as items compare (an integral float as its int), or ``...`` if
    ``value`` is no scalar (it has no item key)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    return ...


def item_key(key: Any, value: Any) -> str | None:
    """The lookup key of one item (``order``: ``7``), equal for items that compare
    equal; None for an item with no such key (a key that is no str, a value that is
    no scalar, NaN)."""
    plain = _plain(value)
    if not isinstance(key, str) or plain is ... or (
            isinstance(plain, float) and not math.isfinite(plain)):
        return None
    return json.dumps([key, plain], ensure_ascii=False)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that refuse comparison are not equal
        return False


def holds(data: Any, match: dict[Any, Any]) -> bool:
    """Whether an event's ``data`` holds every item of ``match`` (any data holds ``{}``;
    data that is no dict holds only ``{}``)."""
    if not match:
        return True
    return isinstance(data, dict) and all(
        k in data and _same(data[k], v) for k, v in match.items())


def _wait_item(match: dict[Any, Any]) -> str | None:
    """The item a wait is looked up by: the first with a key, by key."""
    keys = [item_key(k, v) for k, v in sorted(
        ((k, v) for k, v in match.items() if isinstance(k, str)), key=lambda kv: kv[0])]
    return next((k for k in keys if k is not None), None)


def _event_items(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return []
    return [k for k in (item_key(key, value) for key, value in data.items()) if k is not None]


class EventWaits:
    """The App's waits and deliveries (see the module docstring), on its storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.migrate("event_waits", MIGRATIONS)
        # How many waits each (type, item) has, in memory: an event that no wait could
        # match (nobody waits for its type, or for any item it holds) costs no query.
        self._items: dict[str, dict[str | None, int]] = {}
        for event_type, item, n in storage.sql.execute(COUNT_BY_ITEM).fetchall():
            self._items.setdefault(event_type, {})[item] = n
        self.owed = storage.sql.execute(ANY_DELIVERY).fetchone() is not None

    def watched(self) -> list[str] | None:
        """The types jobs wait for, or None if they are too many to list."""
        return None if len(self._items) > MAX_LISTED_TYPES else sorted(self._items)

    def watched_nouns(self) -> set[str]:
        """The nouns of the types jobs wait for (``Payment`` of ``Payment.received``)."""
        return {t.partition(".")[0] for t in self._items}

    def watch(self, event_type: str, match: dict[Any, Any], queue: str, job_id: str,
              uid: str | None, key: str, now: float) -> None:
        """Register a wait, or keep the one registered before under (queue, uid, key)
        (with its start; its type and match as given now)."""
        uid_ = uid or ""
        item = _wait_item(match)
        with self.storage.transaction():
            row = self.storage.sql.execute(SELECT_WAIT_TYPE, (queue, uid_, key)).fetchone()
            self.storage.sql.execute(UPSERT_WAIT, (
                queue, uid_, key, job_id, event_type, item, codec.encode(match), now))
        if row is not None:
            self._dropped(row[0], row[1])
        items = self._items.setdefault(event_type, {})
        items[item] = items.get(item, 0) + 1

    def unwatch(self, queue: str, uid: str | None, key: str) -> bool:
        """Forget a wait (it timed out); False if it is not here (matched already)."""
        row = self.storage.sql.execute(SELECT_WAIT_TYPE, (queue, uid or "", key)).fetchone()
        if row is None:
            return False
        self.storage.sql.execute(DELETE_WAIT, (queue, uid or "", key))
        self._dropped(row[0], row[1])
        return True

    def _dropped(self, event_type: str, item: str | None) -> None:
        items = self._items.get(event_type, {})
        left = items.get(item, 1) - 1
        if left > 0:
            items[item] = left
            return
        items.pop(item, None)
        if not items:
            self._items.pop(event_type, None)

    def match(self, event_id: str, event_type: str, encoded: bytes, created: float,
              began_by: float) -> int:
        """Match one event (sent at ``created``) against the waits that began at or
        before ``began_by``: each wait it matches is deleted and gets a delivery. Call
        it inside a transaction (with the event's own write, where there is one).
        Returns how many it matched."""
        waited = self._items.get(event_type)
        if waited is None:
            return 0
        try:
            data = codec.decode(encoded, lenient=True)
        except DecodeError:  # not msgpack: no data to hold any item
            data = None
        items = [item for item in _event_items(data) if item in waited]
        if not items and None not in waited:
            return 0
        rows = self.storage.sql.execute(SELECT_CANDIDATES, (
            event_type, began_by, event_type, json.dumps(items), began_by)).fetchall()
        matched = [row for row in rows if holds(data, codec.decode(row[4], lenient=True))]
        if not matched:
            return 0
        value = codec.encode({"id": event_id, "type": event_type, "data": data,
                              "created": created})
        with self.storage.transaction():
            for queue, uid, key, job_id, _, _ in matched:
                self.storage.sql.execute(DELETE_WAIT, (queue, uid, key))
                self.storage.sql.execute(INSERT_DELIVERY, (queue, job_id, uid, key, value))
        for row in matched:
            self._dropped(event_type, row[5])
        self.owed = True
        return len(matched)

    def waits(self, limit: int) -> list[dict[str, Any]]:
        """The waits, oldest first: ``{"queue", "jobId", "key", "type", "match", "since"}``."""
        return [{"queue": queue, "jobId": job_id, "key": key, "type": event_type,
                 "match": codec.decode(match, lenient=True), "since": since}
                for queue, job_id, _, key, event_type, match, since in
                self.storage.sql.execute(SELECT_WAITS, (limit,)).fetchall()]

    def deliveries(self, limit: int, skip: list[str]) -> list[Delivery]:
        """Up to ``limit`` deliveries owed, oldest first, but those for ``skip`` queues."""
        rows = self.storage.sql.execute(SELECT_DELIVERIES, (json.dumps(skip), limit)).fetchall()
        return [(seq, queue, job_id, uid or None, key, value)
                for seq, queue, job_id, uid, key, value in rows]

    def delivered(self, seqs: list[int]) -> None:
        """Forget deliveries their queues took."""
        if seqs:
            self.storage.sql.execute(DELETE_DELIVERIES, (json.dumps(seqs),))
        self.owed = self.storage.sql.execute(ANY_DELIVERY).fetchone() is not None
