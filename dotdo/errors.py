"""Every error dotdo raises on purpose derives from :class:`DotdoError`.

The tree::

    DotdoError
    ├── ConfigError                 dotdo.init() got something it cannot use
    ├── InvalidIdError (ValueError) an object id that is empty or too long
    ├── EncodeError (TypeError)     a value msgpack cannot carry; nothing was written
    ├── DecodeError                 stored bytes that do not decode
    ├── StorageError                the object's SQLite file cannot be used
    │   └── CorruptStorageError     ... because it is not a readable SQLite database
    ├── ObjectError                 a call reached an object but could not run
    │   └── MethodNotFoundError (AttributeError)
    └── LimitError (ValueError)     over a documented limit (payload size, batch, page)

Errors raised by user code inside an object reach the caller as themselves (a
``ValueError`` raised in a method is a ``ValueError`` at ``await``), not wrapped.
"""

from __future__ import annotations

__all__ = [
    "DotdoError",
    "ConfigError",
    "InvalidIdError",
    "EncodeError",
    "DecodeError",
    "StorageError",
    "CorruptStorageError",
    "ObjectError",
    "MethodNotFoundError",
    "LimitError",
]


class DotdoError(Exception):
    """Root of every error dotdo raises itself."""


class ConfigError(DotdoError):
    """``dotdo.init`` was given settings it cannot use, or was called too late."""


class InvalidIdError(DotdoError, ValueError):
    """An object id that is not a non-empty string of at most 512 characters."""


class EncodeError(DotdoError, TypeError):
    """A value that cannot be encoded as msgpack; the call wrote nothing."""


class DecodeError(DotdoError):
    """Stored bytes that do not decode as dotdo's msgpack."""


class StorageError(DotdoError):
    """An object's SQLite file cannot be opened or used."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self):  # keep ``path`` across Ray's pickling
        return (type(self), (self.args[0], self.path))


class CorruptStorageError(StorageError):
    """An object's SQLite file is not a readable database; it is left untouched."""


class ObjectError(DotdoError):
    """A call reached a durable object but could not be run there."""


class MethodNotFoundError(ObjectError, AttributeError):
    """The object has no public method of that name."""


class LimitError(DotdoError, ValueError):
    """A value or a batch over one of dotdo's documented limits; nothing was written."""
