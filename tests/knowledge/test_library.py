from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from knowledge.library import LibraryInvalid, parse_library
from tests.knowledge.conftest import COVID_LIBRARY, DEMO_LIBRARY, make_item

WriteLibrary = Callable[[list[dict[str, Any]]], Path]


def _errors(path: Path) -> list[str]:
    with pytest.raises(LibraryInvalid) as exc:
        parse_library(path)
    return exc.value.errors


def test_demo_library_is_valid_with_at_least_60_items_across_three_products() -> None:
    library = parse_library(DEMO_LIBRARY)
    assert len(library.items) >= 60
    assert {i.product for i in library.items} == {"cardiovex", "respizan", "glucorel"}
    assert set(library.products) == {"cardiovex", "respizan", "glucorel"}
    assert all(p.safety_statement for p in library.products.values())
    assert {i.status for i in library.items} >= {"approved", "withdrawn", "draft"}
    assert any(i.audience == ("patient",) for i in library.items)


def test_demo_yaml_body_is_read_verbatim_without_folding_artifacts() -> None:
    item = next(i for i in parse_library(DEMO_LIBRARY).items if i.id == "CVX-001")
    assert item.body.startswith("The recommended starting dose of Cardiovex (velostatin) is 10 mg once daily.")
    assert "\n" not in item.body and item.body.endswith("20 mg once daily.")


def test_covid_library_loads_and_ignores_unknown_fields() -> None:
    library = parse_library(COVID_LIBRARY)
    assert len(library.items) == 213


def test_missing_field_is_an_error_naming_file_and_line(write_library: WriteLibrary) -> None:
    bad = make_item(id="T-2")
    del bad["approval_code"]
    path = write_library([make_item(), bad])
    errors = _errors(path)
    assert errors == [f"{path}:2: missing field 'approval_code'"]


def test_unknown_kind_in_yaml_names_the_line_of_the_field(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "id: A\nversion: 1\ntitle: t\nproduct: p\nkind: leaflet\naudience: [hcp]\nmarkets: [US]\n"
        "status: approved\napproval_code: X\napproved_at: 2026-01-01\nexpires_at: '2027-01-01'\n"
        "questions: []\nbody: text\n", encoding="utf-8")
    errors = _errors(tmp_path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'a.yaml'}:5: unknown kind 'leaflet'")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("version", "1", "field 'version' must be a positive integer"),
    ("version", True, "field 'version' must be a positive integer"),
    ("status", "live", "unknown status 'live'"),
    ("audience", ["doctor"], "unknown audience 'doctor'"),
    ("markets", ["USA"], "market 'USA' is not an ISO 3166 alpha-2 code"),
    ("questions", "what?", "must be a list of strings"),
    ("approved_at", "01/02/2026", "must be an ISO date"),
    ("body", "   ", "field 'body' must be a non-empty string"),
    ("expires_at", "2025-12-31", "is before approved_at"),
])
def test_mistyped_or_invalid_field_is_a_clear_error(write_library: WriteLibrary, field: str, value: Any,
                                                    message: str) -> None:
    errors = _errors(write_library([make_item(**{field: value})]))
    assert len(errors) == 1 and message in errors[0] and ":1:" in errors[0]


def test_duplicate_id_is_an_error_pointing_at_both_lines(write_library: WriteLibrary) -> None:
    path = write_library([make_item(), make_item(title="other")])
    errors = _errors(path)
    assert errors == [f"{path}:2: duplicate id 'T-001' (first at {path}:1)"]


def test_one_bad_item_means_no_items_at_all(write_library: WriteLibrary) -> None:
    with pytest.raises(LibraryInvalid):
        parse_library(write_library([make_item(), make_item(id="T-2", kind="blog")]))


def test_invalid_json_line_is_reported(write_library: WriteLibrary, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "x"\n', encoding="utf-8")
    assert _errors(path)[0].startswith(f"{path}:1: invalid JSON")


def test_library_digest_changes_when_any_item_changes(write_library: WriteLibrary, tmp_path: Path) -> None:
    a = parse_library(write_library([make_item()])).digest()
    b = parse_library(write_library([make_item(body="Store below 25°C.")], "other.jsonl")).digest()
    assert a != b


# -- hostile files: bounded parsing ---------------------------------------------------------------

def _alias_bomb(levels: int = 8, fan: int = 9) -> str:
    """Each level is a list of ``fan`` references to the previous one: fan**levels values expanded."""
    lines = ['l0: &l0 ["boom", "boom", "boom", "boom", "boom", "boom", "boom", "boom", "boom"]']
    for n in range(1, levels + 1):
        refs = ", ".join([f"*l{n - 1}"] * fan)
        lines.append(f"l{n}: &l{n} [{refs}]")
    return "products:\n  x:\n    display_name: X\n" + "\n".join(lines) + "\n"


def test_an_alias_bomb_in_products_yaml_is_refused_fast_with_file_and_line(tmp_path: Path) -> None:
    import yaml

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "it-1.yaml").write_text(yaml.safe_dump(make_item(id="it-1")), encoding="utf-8")
    (lib / "products.yaml").write_text(_alias_bomb(), encoding="utf-8")
    errors = _errors(lib)  # composed, never expanded: 9**8 values would be gigabytes
    [error] = [e for e in errors if "products.yaml" in e]
    assert "refused: the YAML expands to more than" in error
    assert error.startswith(f"{lib / 'products.yaml'}:")


def test_a_few_aliases_in_an_item_file_are_still_fine(tmp_path: Path) -> None:
    import yaml

    raw = make_item(id="alias-ok")
    text = yaml.safe_dump({k: v for k, v in raw.items() if k not in ("markets", "audience")})
    text += "markets: &m [US]\naudience: &a [hcp]\nx_markets: *m\nx_audience: *a\n"
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "alias-ok.yaml").write_text(text, encoding="utf-8")
    [item] = parse_library(lib).items
    assert item.markets == ("US",)


def test_yaml_nested_thousands_deep_is_refused_not_a_crash(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "deep.yaml").write_text("id: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    [error] = _errors(lib)
    assert error.startswith(f"{lib / 'deep.yaml'}:") and "nested" in error


def test_jsonl_nested_200000_deep_names_the_line(tmp_path: Path) -> None:
    import json

    path = tmp_path / "lib.jsonl"
    good = json.dumps(make_item(id="ok-1"))
    path.write_text(good + "\n" + '{"id": ' + "[" * 200_000 + "]" * 200_000 + "}\n", encoding="utf-8")
    [error] = _errors(path)
    assert error == f"{path}:2: refused: the JSON is nested too deep"


def test_many_small_aliases_are_refused_past_the_budget(tmp_path: Path) -> None:
    import yaml

    text = yaml.safe_dump(make_item(id="many")) + "anchor: &a x\nrefs: [" + ", ".join(["*a"] * 60) + "]\n"
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "many.yaml").write_text(text, encoding="utf-8")
    [error] = _errors(lib)
    assert "refused: the YAML has more than" not in error
    assert "more than 50 aliases" in error
