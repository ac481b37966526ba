"""The rollup flush hook is wiring, not an import side effect: importing the core or the rollups
module installs nothing; the entry points install it, once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO

CHECK = "from sqlalchemy import event; from sqlalchemy.orm import Session; from feedback import rollups\n" \
        "def installed(): return event.contains(Session, 'after_flush', rollups._after_flush)\n"


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", CHECK + textwrap.dedent(code)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_models_installs_no_flush_hook_and_install_adds_it_once() -> None:
    out = _run("""
        import api.db
        api.db.import_all_models()
        api.db.make_session_factory(api.db.make_engine("sqlite://"))
        print(installed())
        rollups.install(); rollups.install()
        event.remove(Session, "after_flush", rollups._after_flush)
        print(installed())
    """)
    assert out.split() == ["False", "False"]


def test_the_command_line_installs_the_hook_before_any_command() -> None:
    out = _run("""
        from api import cli
        try:
            cli.main(["--help"])
        except SystemExit:
            pass
        print(installed())
    """)
    assert out.splitlines()[-1] == "True"
