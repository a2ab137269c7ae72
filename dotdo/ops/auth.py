"""Bearer tokens of the HTTP API: one that may do everything, and a read-only one for
the pages. Generated on first use into the storage root, readable by this user only
(``<root>/_dotdo_api/token`` and ``read_token``), or given. Also the check that a
write a browser carried (by cookie or ``?token=``) comes from this server's own pages."""

from __future__ import annotations

import dataclasses
import hmac
import os
import secrets
from urllib.parse import urlsplit

__all__ = ["Tokens", "ADMIN", "READ", "same_site"]

ADMIN = "admin"
READ = "read"
_FOLDER = "_dotdo_api"  # under the storage root; "_dotdo_" folders are not classes
_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SAME = ("same-origin", "none")  # Sec-Fetch-Site of this server's pages, or typed by a person


def _load_or_write(path: str) -> str:
    """The token in ``path``, or a new one written there with mode 0600."""
    try:
        with open(path) as f:
            token = f.read().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)  # also when the file existed empty with wider modes
    return token


@dataclasses.dataclass(frozen=True)
class Tokens:
    """The admin ``token`` and the ``read_token``; ``path``/``read_path`` are the files
    they came from (None when given)."""

    token: str
    read_token: str
    path: str | None = None
    read_path: str | None = None

    @classmethod
    def load_or_create(cls, root: str, token: str | None = None,
                       read_token: str | None = None) -> Tokens:
        """Tokens given, else those in ``root``'s token files (created if missing)."""
        for name, value in (("token", token), ("read_token", read_token)):
            if value is not None and len(value) < 16:
                raise ValueError(f"{name} must have at least 16 characters: a short token is "
                                 "guessable; leave it out to have one generated")
        folder = os.path.join(root, _FOLDER)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        path = os.path.join(folder, "token")
        read_path = os.path.join(folder, "read_token")
        return cls(token or _load_or_write(path), read_token or _load_or_write(read_path),
                   None if token else path, None if read_token else read_path)

    def role(self, presented: str | None) -> str | None:
        """``admin``, ``read`` or None (no or a wrong token), compared in constant time."""
        if not presented:
            return None
        given = presented.encode()
        if hmac.compare_digest(given, self.token.encode()):
            return ADMIN
        if hmac.compare_digest(given, self.read_token.encode()):
            return READ
        return None


def _origin(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an address's ``netloc``, the default port filled in."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or _PORTS.get(scheme.lower())
    except ValueError:  # a port that is not a number
        return None
    if not parts.hostname or port is None:
        return None
    return scheme.lower(), parts.hostname.lower(), port


def same_site(scheme: str, host: str | None, origin: str | None, fetch_site: str | None,
              referer: str | None, *, cookie: bool) -> bool:
    """Whether a write a browser may have sent by itself comes from this server's own
    pages: its ``Origin`` (else ``Sec-Fetch-Site``, else the ``Referer``'s origin) is
    ``scheme://host`` of the request. SameSite cookies do not tell: another port of
    the same host is the same *site*. With none of the three headers, a ``cookie``
    write is refused (a browser that sends none cannot be told apart), a ``?token=``
    one taken (a program that knows the token, not a page that rode along)."""
    here = _origin(scheme, host or "")
    if here is None:
        return False
    if origin is not None:
        parts = urlsplit(origin) if origin != "null" else None
        return parts is not None and _origin(parts.scheme, parts.netloc) == here
    if fetch_site is not None:
        return fetch_site.strip().lower() in _SAME
    if referer is not None:
        parts = urlsplit(referer)
        return _origin(parts.scheme, parts.netloc) == here
    return not cookie
