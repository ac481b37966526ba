"""The README stays true: the two commands first, every setting documented."""

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
    text = (REPO / "README.md").read_text()
    missing = [f"CONCIERGE_{name.upper()}" for name in Settings.model_fields
               if f"CONCIERGE_{name.upper()}" not in text]
    assert not missing, f"README does not document: {missing}"


def test_makefile_targets_the_readme_names_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("run", "test", "lint"):
        assert re.search(rf"^{target}:", makefile, re.M), target
