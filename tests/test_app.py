"""The App keeps only what drivers registered: checked specs, modules that registered
something, and none that no longer exist."""

import os
import sys
import textwrap

import pytest

import dotdo
from dotdo import app, registry
from tests.conftest import kill_and_wait


@pytest.mark.parametrize("spec", [
    ["module", "os; import evil"], ["module", ""], ["module", 7], ["package", "x"],
    ["script", "relative/path.py"], ["script", "/no/such/file.py"], ["script", "/etc/hostname"],
    "tests.objects", ["module"],
])
def test_a_spec_that_names_no_module_or_script_is_refused(spec):
    with pytest.raises(ValueError, match="is not a module to import|does not exist"):
        registry.check_spec(spec)


def test_a_module_that_is_gone_is_told_from_one_that_fails(tmp_path):
    # Given specs whose module no longer exists, and ones whose import merely fails
    broken = tmp_path / "broken_on_import.py"
    broken.write_text("raise RuntimeError('a passing fault')\n")
    needs = tmp_path / "needs_a_dependency.py"
    needs.write_text("import some_dependency_not_installed_yet\n")
    gone = app.import_modules([["module", "no_such_module_anywhere"],
                               ["module", "no_such_package_anywhere.sub"],
                               ["module", "json.no_such_submodule"],
                               ["script", str(tmp_path / "deleted.py")],
                               ["script", str(broken)], ["script", str(needs)],
                               ["module", "json"]], "test")
    # Then only the ones that no longer exist are reported gone
    assert gone == [["module", "no_such_module_anywhere"], ["module", "no_such_package_anywhere.sub"],
                    ["module", "json.no_such_submodule"], ["script", str(tmp_path / "deleted.py")]]


def test_a_script_deleted_after_it_was_loaded_is_gone(tmp_path):
    # Given a script already loaded in this process (a pooled App evicted, not killed)
    script = tmp_path / "loaded_then_deleted.py"
    script.write_text("LOADED = True\n")
    assert app.import_modules([["script", str(script)]], "test") == []
    assert registry.module_name(("script", str(script))) in sys.modules
    # When its file is deleted, then the next import finds it gone
    os.remove(script)
    assert app.import_modules([["script", str(script)]], "test") == [["script", str(script)]]


@pytest.mark.parametrize("stored", [["bogus", "x"], ["module", "a", "b"], "junk", 7, ["module", "a-b"]])
def test_a_malformed_stored_spec_is_dropped_not_fatal(stored):
    # Older versions stored whatever keep_modules was given: activation must not fail on it.
    assert app.import_modules([stored, ["module", "json"]], "test") == [stored]


def test_only_modules_that_registered_something_count():
    from tests import job_handlers  # noqa: F401  (registers job types)

    assert registry.has_registrations("tests.job_handlers")
    assert not registry.has_registrations("tests.job_handlers", "another-app")
    assert not registry.has_registrations("json")


def test_a_driver_ships_only_specs_its_app_would_accept(monkeypatch, tmp_path):
    def handler(event):
        pass

    handler.__module__ = "__main__"
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__file__", "/srv/app.pyz/__main__.py", raising=False)
    assert registry.module_spec(handler) is None  # inside a zip: no file to import
    script = tmp_path / "driver.py"
    script.write_text("")
    monkeypatch.setattr(main, "__file__", str(script))
    assert registry.module_spec(handler) == ("script", str(script))
    handler.__module__ = "not-an-identifier"
    assert registry.module_spec(handler) is None
    handler.__module__ = "tests.job_handlers"
    assert registry.module_spec(handler) == ("module", "tests.job_handlers")


def test_the_app_keeps_what_registered_and_drops_what_is_gone(make_object, unique, tmp_path):
    the_app = make_object("App", unique)
    # A bogus spec is refused, and nothing is stored
    with pytest.raises(ValueError, match="is not a module to import"):
        the_app.keep_modules([["module", "tests.objects"], ["script", "relative.py"]]).result()
    assert the_app.module_list().result() == []
    # A module that registers nothing is imported but not kept; nor one that registers
    # for another App (module-level handlers belong to App("default"))
    assert the_app.keep_modules([["module", "json"], ["module", "tests.job_handlers"]]).result() == []
    # A script that registers a handler for this App is kept...
    script = tmp_path / f"handlers_{abs(hash(unique))}.py"
    script.write_text(textwrap.dedent(f"""
        from dotdo import registry

        def happened(event):
            pass

        # What a module-level @on does for App("default"), for this App.
        registry.app_registrations({unique!r}).add(registry.Kind.ON, "Thing.happened", happened)
        registry.remember_module(happened, {unique!r})
    """))
    assert the_app.keep_modules([["script", str(script)]]).result() == [["script", str(script)]]
    assert the_app.listens("Thing").result()
    # ...until it no longer exists: the next activation drops it
    os.remove(script)
    kill_and_wait(the_app)
    assert the_app.module_list().result() == []


def test_what_the_default_app_keeps_is_well_formed_and_has_the_handlers(local_session):
    from tests import job_handlers  # noqa: F401  (workers import this module from the App)

    dotdo.deploy()
    kept = dotdo.App("default").module_list().result()
    assert ["module", "tests.job_handlers"] in kept
    assert all(registry.check_spec(spec) for spec in kept)
