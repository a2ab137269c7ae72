"""Reads of objects' files for operators (the command, the HTTP API, the dashboard),
made where SQLite allows them.

An object's file is in WAL mode, and WAL's shared memory works only between
processes of one machine: a reader on another node, over a shared file system, can
see torn pages and even damage the writer's file. So a read of an object that a host
holds live goes to that host (:meth:`Endpoints.read <dotdo.endpoints.Endpoints.read>`),
which opens the file read only on its own node; only files no host holds are opened
here. Which host holds what comes from Ray's named actors of the namespace: a
dedicated host's name is its object's (``Class/id``); a pooled host
(``pool[i/n]``) says which of its objects are live (``held``).

Without Ray (a command that found no cluster) or in in-process mode, every live
object is in this machine's processes, and files are read here.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import ray

from dotdo import settings as _conf
from dotdo.ids import storage_path
from dotdo.storage import reader

__all__ = ["read", "hosts_of", "ANSWER_TIMEOUT"]

ANSWER_TIMEOUT = 10.0  # seconds a host may take to answer reads (a query's deadline is 5 s)
_POOL_HOST = re.compile(r"^.+\[\d+/\d+\]$")


async def read(root: str, requests: list[reader.Request]) -> list[list]:
    """Answer ``requests`` (see :func:`dotdo.storage.reader.answer`): each on the host that
    holds its object live, else from the file here. ``[True, value]`` or ``[False,
    error]`` per request, in order; a host that does not answer in time fails its
    requests with TimeoutError (its files are not opened from here meanwhile)."""
    if not requests:
        return []
    conf = _conf.current()
    if not ray.is_initialized() or conf is None or conf.in_process:
        return await asyncio.to_thread(reader.answer, root, requests)
    where, silent = await hosts_of(root, conf.namespace)
    groups: dict[str | None, list[int]] = {}
    for i, (rel, _, _) in enumerate(requests):
        groups.setdefault(where.get(rel), []).append(i)
    out: list[list] = [[False, None]] * len(requests)

    async def answer(host: str | None, indexes: list[int]) -> None:
        batch = [requests[i] for i in indexes]
        answers = None if host is None else await _ask(host, conf.namespace, root, batch)
        if answers is None and host is None and silent:
            error = TimeoutError(
                f"the pooled host(s) {', '.join(silent)} did not say within "
                f"{ANSWER_TIMEOUT:g} s which objects they hold (busy or frozen): this "
                "object's file is not read from here while one of them may be writing it; "
                "try again")
            answers = [[False, error] for _ in batch]
        if answers is None:  # no host holds these objects: nobody writes their files
            answers = await asyncio.to_thread(reader.answer, root, batch)
        for i, a in zip(indexes, answers):
            out[i] = a

    await asyncio.gather(*(answer(h, ix) for h, ix in groups.items()))
    return out


async def hosts_of(root: str, namespace: str) -> tuple[dict[str, str], list[str]]:
    """File (relative to ``root``) -> name of the host actor that holds its object
    live, for the live hosts of ``namespace``; and the pooled hosts that did not say
    in time which objects they hold."""
    names = await asyncio.to_thread(_named_actors, namespace)
    where: dict[str, str] = {}
    pools = []
    for name in names:
        if _POOL_HOST.match(name):
            pools.append(name)
            continue
        class_name, _, object_id = name.partition("/")
        if object_id and class_name.isidentifier():
            where[reader.relative(root, storage_path(root, class_name, object_id))] = name
    held = await asyncio.gather(*(_held(name, namespace, root) for name in pools))
    silent = [name for name, files in zip(pools, held) if files is _SILENT]
    for name, files in zip(pools, held):
        for rel in files or ():
            where[rel] = name
    return where, silent


def _named_actors(namespace: str) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a.get("namespace") == namespace]


_SILENT: list[str] = []  # what _held answers for a host that did not answer in time


async def _held(name: str, namespace: str, root: str) -> list[str] | None:
    """The live objects' files of pooled host ``name``; None if it is gone or busy
    restarting (its objects are not live until it is back) or not a host; _SILENT
    if it did not answer in time."""
    try:
        return await _call(name, namespace, "held", root)
    except TimeoutError:
        return _SILENT


async def _ask(name: str, namespace: str, root: str, batch: list[reader.Request]
               ) -> list[list] | None:
    """Host ``name``'s answers to ``batch``; None when it holds none of these files
    after all (gone, restarting, another root, not a host)."""
    try:
        return await _call(name, namespace, "read", root, batch)
    except TimeoutError:
        error = TimeoutError(f"the host {name} of this object did not answer a read within "
                             f"{ANSWER_TIMEOUT:g} s (it is busy or frozen); its file is not "
                             "read from here while it may be writing it: try again")
        return [[False, error] for _ in batch]


async def _call(name: str, namespace: str, method: str, *args: Any) -> Any:
    """``method(*args)`` of host actor ``name``; None if it is gone, restarting or not a
    host; TimeoutError past ``ANSWER_TIMEOUT``."""
    try:
        handle = await asyncio.to_thread(ray.get_actor, name, namespace)
        return await asyncio.wait_for(_ref(getattr(handle, method).remote(*args)),
                                      ANSWER_TIMEOUT)
    except (ValueError, AttributeError, ray.exceptions.RayActorError,
            ray.exceptions.ActorUnavailableError):
        return None


async def _ref(ref: Any) -> Any:
    return await ref
