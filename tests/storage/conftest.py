import pytest

from dotdo.storage.kv import Storage


@pytest.fixture
def make_storage(tmp_path):
    """Factory of Storage objects on real files; closes them all afterwards."""
    opened = []

    def make(object_id="o1", class_name="Thing", compact=False):
        s = Storage(str(tmp_path / class_name / f"{object_id}.sqlite3"), class_name, object_id,
                    compact=compact)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
