"""scripts/import_cycles.py: circles and core imports counted on small trees written here, and the
budget the repository itself is held to."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "import_cycles.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_cycles", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cycles = _load()


def _tree(root: Path, files: dict[str, str]) -> Path:
    for package in ("api", "knowledge", "feedback", "bot"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").touch()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_an_import_inside_a_function_closes_a_circle(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "api/orders/__init__.py": "",
        "api/orders/service.py": "from api.billing import service\n",
        "api/billing/__init__.py": "",
        "api/billing/service.py": "def charge():\n    from api.orders.service import x\n",
    })
    found = cycles.circles(cycles.import_graph(root))
    assert found == [["api.billing.service", "api.orders.service"]]


def test_relative_and_from_package_imports_resolve_to_modules(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "knowledge/engine.py": "from . import service\n",
        "knowledge/service.py": "from .engine import rank\n",
        "feedback/a.py": "import feedback.b\n",
        "feedback/b.py": "from feedback import models\n",
        "feedback/models.py": "",
    })
    graph = cycles.import_graph(root)
    assert graph["knowledge.engine"] == {"knowledge.service"}
    assert graph["feedback.b"] == {"feedback.models"}
    assert cycles.circles(graph) == [["knowledge.engine", "knowledge.service"]]


def test_a_chain_without_a_way_back_is_no_circle(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "api/a.py": "import api.b\n",
        "api/b.py": "import api.c\n",
        "api/c.py": "import json\n",
    })
    assert cycles.circles(cycles.import_graph(root)) == []


def test_the_core_may_use_a_helper_but_not_a_domain_behind_it(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "api/db.py": "from api.net import parse\n",
        "api/net.py": "import ipaddress\n",
        "api/settings.py": "def check():\n    from api.util import parse\n",
        "api/util.py": "from feedback.fatigue import parse\n",
        "feedback/fatigue.py": "",
    })
    assert cycles.core_violations(cycles.import_graph(root)) == [("api.settings", "api.util")]


def test_exit_status_follows_the_budgets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path, {
        "api/x.py": "import api.y\n",
        "api/y.py": "import api.x\n",
        "api/db.py": "import feedback.rollups\n",
        "feedback/rollups.py": "",
    })
    assert cycles.main(["--root", str(root), "--budget", "0", "--core-budget", "1"]) == 1
    assert cycles.main(["--root", str(root), "--budget", "1", "--core-budget", "0"]) == 1
    assert cycles.main(["--root", str(root), "--budget", "1", "--core-budget", "1"]) == 0
    out = capsys.readouterr().out
    assert "circle 1 (2 modules): api.x api.y" in out
    assert "core module api.db imports feedback.rollups" in out


def test_a_negative_budget_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        cycles.main(["--root", str(_tree(tmp_path, {})), "--budget", "-1"])
    assert exc.value.code == 2


def test_the_repository_stays_within_the_budget_make_lint_sets() -> None:
    makefile = (REPO / "Makefile").read_text()
    line = next(raw for raw in makefile.splitlines() if "scripts/import_cycles.py" in raw)
    args = line.split("scripts/import_cycles.py", 1)[1].split()
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
