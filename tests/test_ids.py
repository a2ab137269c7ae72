import os

import pytest

from dotdo.errors import InvalidIdError
from dotdo.ids import MAX_ID_LENGTH, actor_name, check_class_name, check_id, storage_path

ROOT = "/srv/dotdo"


@pytest.mark.parametrize("bad", ["", "x" * (MAX_ID_LENGTH + 1)])
def test_empty_or_long_ids_raise_value_error(bad):
    with pytest.raises(ValueError):
        check_id(bad)


def test_non_string_id_names_the_fix():
    with pytest.raises(InvalidIdError, match="str"):
        check_id(42)


@pytest.mark.parametrize(
    "object_id", ["../x", "../../etc/passwd", "/etc/passwd", "a\x00b", "..", ".", "C:\\x", "x" * 512]
)
def test_no_id_escapes_the_root(object_id):
    path = storage_path(ROOT, "Counter", check_id(object_id))
    assert os.path.commonpath([ROOT, os.path.normpath(path)]) == ROOT
    assert "\x00" not in path
    assert os.path.dirname(os.path.dirname(path)) == os.path.join(ROOT, "Counter")


def test_ids_differing_in_case_or_punctuation_get_different_files():
    ids = ["user-1", "User-1", "USER-1", "user_1", "user.1", "user 1", "user1"]
    paths = {storage_path(ROOT, "Counter", i).lower() for i in ids}
    assert len(paths) == len(ids)


def test_path_is_stable_and_readable():
    assert storage_path(ROOT, "Counter", "Order #42") == storage_path(ROOT, "Counter", "Order #42")
    assert os.path.basename(storage_path(ROOT, "Counter", "Order #42")).startswith("order-42-")


def test_actor_name_is_class_slash_id():
    assert actor_name("Counter", "a/b") == "Counter/a/b"


@pytest.mark.parametrize("bad", ["a\ud800", "\udfff", "x\udcffy", "\ud83d"])
def test_lone_surrogates_are_refused_with_the_reason(bad):
    with pytest.raises(InvalidIdError, match="lone surrogate") as info:
        check_id(bad)
    assert "decode the bytes strictly" in str(info.value)


@pytest.mark.parametrize("good", ["\U0001f600", "caf\u00e9", "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16"), "a\x00b", "../x", " "])
def test_any_valid_text_is_an_id(good):
    assert check_id(good) == good


@pytest.mark.parametrize("class_name", ["..", "../x", "a/b", "/etc", "", "1x", "a.b", 7])
def test_a_class_name_that_is_not_an_identifier_never_becomes_a_path(class_name):
    with pytest.raises(InvalidIdError, match="a class name is a Python identifier"):
        storage_path(ROOT, class_name, "x")


def test_class_names_are_identifiers_unicode_ones_too():
    assert check_class_name("Counter") == "Counter"
    assert check_class_name("_Private") == "_Private"
    assert os.path.dirname(os.path.dirname(storage_path(ROOT, "Zähler", "x"))) == f"{ROOT}/Zähler"
