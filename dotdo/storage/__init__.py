"""The SQLite files of objects: the only package that touches SQLite.

One file per object (``<root>/<Class>/<ab>/<id>.sqlite3``, see :mod:`dotdo.ids`):

* :mod:`~dotdo.storage.connection`: the file's connection, its one transaction
  context manager, durability, and the lock that keeps it to one process;
* :mod:`~dotdo.storage.schema`: dotdo's tables in it, their versions and migrations
  (:class:`~dotdo.storage.schema.Migrations`, for an object's own tables too);
* :mod:`~dotdo.storage.journal`: dotdo's records (steps, events, schedules, alarm);
* :mod:`~dotdo.storage.kv`: :class:`~dotdo.storage.kv.Storage`, what an object sees;
* :mod:`~dotdo.storage.directory`: a pooled host's own file of objects to wake;
* :mod:`~dotdo.storage.reader`: read-only views of the files, for operators.

Nothing is imported here: a module that needs one of these imports it by its own
name, and a reader of files (the operators' tools) brings in nothing that writes.
"""
