"""The App keeps only what drivers registered: checked specs, modules that registered
something, and none that no longer exist."""

import os
import signal
import textwrap

import pytest

import dotdo
from dotdo import app, registry
from tests.conftest import host_pid, wait_for


@pytest.mark.parametrize("spec", [
    ["module", "os; import evil"], ["module", ""], ["module", 7], ["package", "x"],
    ["script", "relative/path.py"], ["script", "/no/such/file.py"], ["script", "/etc/hostname"],
    "tests.objects", ["module"],
])
def test_a_spec_that_names_no_module_or_script_is_refused(spec):
    with pytest.raises(ValueError, match="is not a module to import"):
        app.check_spec(spec)


def test_a_module_that_is_gone_is_told_from_one_that_fails(tmp_path):
    # Given specs whose module no longer exists, and one whose import merely fails
    broken = tmp_path / "broken_on_import.py"
    broken.write_text("raise RuntimeError('a passing fault')\n")
    gone = app.import_modules([["module", "no_such_module_anywhere"],
                               ["script", str(tmp_path / "deleted.py")],
                               ["script", str(broken)]], "test")
    # Then only the ones that no longer exist are reported gone
    assert gone == [["module", "no_such_module_anywhere"], ["script", str(tmp_path / "deleted.py")]]


def test_only_modules_that_registered_something_count():
    from tests import job_handlers  # noqa: F401  (registers job types)

    assert registry.has_registrations("tests.job_handlers")
    assert not registry.has_registrations("json")


def test_the_app_keeps_what_registered_and_drops_what_is_gone(make_object, unique, tmp_path):
    the_app = make_object("App", unique)
    # A bogus spec is refused, and nothing is stored
    with pytest.raises(ValueError, match="is not a module to import"):
        the_app.adopt([["module", "tests.objects"], ["script", "relative.py"]]).result()
    assert the_app.module_list().result() == []
    # A module that registers nothing is imported but not kept
    assert the_app.adopt([["module", "json"]]).result() == []
    # A script that registers a handler is kept...
    script = tmp_path / f"handlers_{abs(hash(unique))}.py"
    script.write_text(textwrap.dedent("""
        import dotdo

        @dotdo.on.Thing.happened
        def happened(event):
            pass
    """))
    assert the_app.adopt([["script", str(script)]]).result() == [["script", str(script)]]
    # ...until it no longer exists: the next activation drops it
    os.remove(script)
    pid = host_pid(the_app)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: host_pid(the_app) != pid)
    assert the_app.module_list().result() == []


def test_what_the_default_app_keeps_is_well_formed_and_has_the_handlers(ray_session):
    from tests import job_handlers  # noqa: F401  (workers import this module from the App)

    dotdo.deploy()
    kept = dotdo.App("default").module_list().result()
    assert ["module", "tests.job_handlers"] in kept
    assert all(app.check_spec(spec) for spec in kept)
