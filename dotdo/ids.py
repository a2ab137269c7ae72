"""Object ids: what is allowed, and how an id becomes a file name and an actor name.

An id is any non-empty string of at most 512 characters that is valid Unicode text
(no lone surrogates, which UTF-8, Ray's actor names and SQLite cannot carry). It never
becomes a path as it is: the file name is a readable slug of the id (for people
browsing the storage root) plus a SHA-256 digest of the exact id, so ``../x``,
``/etc/passwd`` or a NUL stay inside the root, and ids that differ only in case or
punctuation (``a-b``, ``A_B``) get different files even on a case-insensitive file
system.

A class name becomes a folder under the root, so it must be a Python identifier
(what ``class Name`` can define): ``..``, ``a/b`` or an empty name are refused, never
joined to a path.
"""

from __future__ import annotations

import hashlib
import os
import re

from dotdo.errors import InvalidIdError

__all__ = ["MAX_ID_LENGTH", "MAX_CLASS_NAME_LENGTH", "check_id", "check_class_name",
           "actor_name", "storage_path"]

MAX_ID_LENGTH = 512
MAX_CLASS_NAME_LENGTH = 200  # a folder name: file systems take 255 bytes
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


def check_class_name(class_name: object) -> str:
    """Return ``class_name`` if it is a Python identifier (the name of a durable
    object class), else raise :class:`InvalidIdError`."""
    if not isinstance(class_name, str) or not class_name.isidentifier() \
            or len(class_name.encode("utf-8")) > MAX_CLASS_NAME_LENGTH:
        raise InvalidIdError(
            f"a class name is a Python identifier of at most {MAX_CLASS_NAME_LENGTH} bytes, "
            f"as `class Counter(dotdo.DurableObject)` defines one, not {class_name!r}: give "
            "the class's name (dotdo objects ls lists them)")
    return class_name


def actor_name(class_name: str, object_id: str) -> str:
    """The Ray actor name of a dedicated object: ``"<Class>/<id>"``."""
    return f"{class_name}/{object_id}"


def storage_path(root: str, class_name: str, object_id: str) -> str:
    """Where the object's SQLite file lives under ``root``.

    ``<root>/<Class>/<digest[:2]>/<slug>-<digest>.sqlite3``: the two-character shard
    keeps directories small at 100,000 objects. ``class_name`` must be an identifier
    (:func:`check_class_name`), so the path never leaves ``root``.
    """
    check_class_name(class_name)
    digest = hashlib.sha256(object_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    slug = _UNSAFE.sub("-", object_id.lower()).strip("-")[:_SLUG_LENGTH] or "id"
    return os.path.join(root, class_name, digest[:2], f"{slug}-{digest}.sqlite3")
