"""The README stays true and short: the two commands first, links that resolve; every setting is
documented in docs/configuration.md."""

from __future__ import annotations

import re

from api.settings import Settings
from tests.conftest import REPO


def test_readme_starts_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    code_blocks = re.findall(r"```(?:\w+)?\n(.*?)```", text, re.S)
    assert code_blocks, "README has no command block"
    first = [line.split("#")[0].strip() for line in code_blocks[0].splitlines()
             if line.strip() and not line.startswith("#")]
    assert first[:2] == ["make run", "make test"]


def test_every_setting_is_documented_with_its_env_name() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    missing = [f"CONCIERGE_{name.upper()}" for name in Settings.model_fields
               if f"CONCIERGE_{name.upper()}" not in text]
    assert not missing, f"docs/configuration.md does not document: {missing}"


def test_the_readme_and_docs_link_only_to_files_that_exist() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_the_readme_fits_a_newcomer_s_two_screens() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 120, f"README has {len(lines)} lines: move the detail into docs/"


def test_makefile_targets_the_readme_names_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("run", "test", "lint"):
        assert re.search(rf"^{target}:", makefile, re.M), target
