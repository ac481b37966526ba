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
