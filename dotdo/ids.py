"""Object ids: what is allowed, and how an id becomes a file name and an actor name.

An id is any non-empty string of at most 512 characters that is valid Unicode text
(no lone surrogates, which UTF-8, Ray's actor names and SQLite cannot carry). It never
becomes a path as it is: the file name is a readable slug of the id (for people
browsing the storage root) plus a SHA-256 digest of the exact id, so ``../x``,
``/etc/passwd`` or a NUL stay inside the root, and ids that differ only in case or
punctuation (``a-b``, ``A_B``) get different files even on a case-insensitive file
system.
"""

from __future__ import annotations

import hashlib
import os
import re

from dotdo.errors import InvalidIdError

__all__ = ["MAX_ID_LENGTH", "check_id", "actor_name", "storage_path"]

MAX_ID_LENGTH = 512
_SLUG_LENGTH = 40
_UNSAFE = re.compile(r"[^a-z0-9]+")


def check_id(object_id: object) -> str:
    """Return ``object_id`` if it is a valid id, else raise :class:`InvalidIdError`."""
    if not isinstance(object_id, str):
        raise InvalidIdError(
            f"an object id must be a str, not {type(object_id).__name__}: "
            f"use str({object_id!r}) if that is the id you mean"
        )
    if not object_id:
        raise InvalidIdError("an object id must not be empty")
    if len(object_id) > MAX_ID_LENGTH:
        raise InvalidIdError(
            f"an object id may have at most {MAX_ID_LENGTH} characters, this one has "
            f"{len(object_id)}: hash long keys into a shorter id"
        )
    try:
        object_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidIdError(
            f"an object id must be valid Unicode text, but {object_id!r} has a lone "
            f"surrogate at position {exc.start} (text decoded with errors="
            "'surrogateescape' or cut from UTF-16): decode the bytes strictly, or use "
            "their hex as the id"
        ) from None
    return object_id


def actor_name(class_name: str, object_id: str) -> str:
    """The Ray actor name of a dedicated object: ``"<Class>/<id>"``."""
    return f"{class_name}/{object_id}"


def storage_path(root: str, class_name: str, object_id: str) -> str:
    """Where the object's SQLite file lives under ``root``.

    ``<root>/<Class>/<digest[:2]>/<slug>-<digest>.sqlite3``: the two-character shard
    keeps directories small at 100,000 objects.
    """
    digest = hashlib.sha256(object_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    slug = _UNSAFE.sub("-", object_id.lower()).strip("-")[:_SLUG_LENGTH] or "id"
    return os.path.join(root, class_name, digest[:2], f"{slug}-{digest}.sqlite3")
