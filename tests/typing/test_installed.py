"""A user's app, in a folder of its own, gets dotdo's types from the installed package:
mypy finds the packages (their py.typed markers; an editable install it can follow,
see the Makefile) and checks the app's calls against them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

APP = textwrap.dedent('''
    from typing import Any, assert_type

    import dotdo
    from actors import Queue


    class Account(dotdo.DurableObject):
        def deposit(self, amount: int) -> int:
            return amount


    async def main() -> None:
        alice = Account.stub("alice")
        assert_type(await alice.call(Account.deposit, 10), int)
        assert_type(alice.deposit(10), dotdo.Promise[Any])
        assert_type(Queue.stub("emails"), dotdo.Stub[Queue])
        alice.call(Account.deposit, "ten")  # the one error
''')


def test_an_app_outside_the_repository_is_checked_against_the_installed_types(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    wrong = next(n for n, line in enumerate(APP.splitlines(), 1) if "the one error" in line)
    run = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "app.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    errors = [line.split(" error: ")[0] + line[line.rindex("["):]
              for line in run.stdout.splitlines() if ": error: " in line]
    assert errors == [f"app.py:{wrong}:[call-overload]"], (
        "mypy did not check the app against the installed dotdo (an editable install "
        "must be one it follows: pip install -e . --config-settings editable_mode=compat, "
        f"as the Makefile does):\n{run.stdout}{run.stderr}")
