"""``concierge export crm``: JSON lines in the documented schema, metadata only, idempotent."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.cli import main
from api.db import unit_of_work
from api.hcps import crm
from api.requests.models import RequestStatus, ServiceRequest
from tests.hcps.factory import T0, Planted, plant_hcp

DOC = Path(__file__).resolve().parents[2] / "docs" / "crm-export.md"
DAY = ["--since", T0.date().isoformat(), "--until", (T0 + timedelta(days=1)).date().isoformat()]


@pytest.fixture()
def cli_db(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)


@pytest.fixture()
def planted(engine: Engine) -> Planted:
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as session:
        return plant_hcp(session)


def export(tmp_path: Path, *args: str) -> tuple[bytes, list[dict[str, Any]]]:
    out = tmp_path / f"crm-{len(list(tmp_path.iterdir()))}.jsonl"
    assert main(["export", "crm", *args, "--out", str(out)]) == 0
    raw = out.read_bytes()
    return raw, [json.loads(line) for line in raw.decode().splitlines()]


def mine(rows: list[dict[str, Any]], p: Planted) -> list[dict[str, Any]]:
    return [r for r in rows if r["hcp_id"] == p.hcp_id]


def test_every_line_is_a_documented_record(planted: Planted, cli_db: None, tmp_path: Path) -> None:
    _raw, rows = export(tmp_path, *DAY)
    doc = DOC.read_text()
    documented_kinds = set(re.findall(r"^\| `(\w+)` \| ", doc.split("| `kind` | `status`")[1], re.M))
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["type"] in crm.RECORD_TYPES and f"## `{r['type']}`" in doc
        assert r["schema"] == "crm-export/1" and isinstance(r["hcp_id"], str)
        for key in ("occurred_at", "updated_at", "at", "since", "created_at"):
            if r.get(key) is not None:
                assert datetime.fromisoformat(r[key]).utcoffset() == timedelta(0)
        if r["type"] == "interaction":
            assert r["kind"] in documented_kinds
            assert r["id"] == f"{r['kind']}:{r['id'].split(':', 1)[1]}"
    kinds = sorted(r["kind"] for r in mine(rows, planted) if r["type"] == "interaction")
    assert kinds == ["adverse_event", "answer_rating", "comment", "conversation", "conversation", "handoff",
                     "medical_inquiry", "question", "service_request", "survey"]
    types = sorted(r["type"] for r in mine(rows, planted) if r["type"] != "interaction")
    assert types == ["consent", "consent_change", "hcp", "preference", "preference", "preference_change",
                     "preference_change"]
    [account] = [r for r in mine(rows, planted) if r["type"] == "hcp"]
    assert account["name"] == planted.name and account["channels"] == ["whatsapp"] and not account["erased"]
    [freq] = [r for r in mine(rows, planted) if r["type"] == "preference_change" and r["name"] == "frequency"]
    assert freq["changed_by"]["actor_type"] == "hcp" and freq["message_id"] is not None


def test_no_medical_safety_or_free_text_content_leaves(planted: Planted, cli_db: None, tmp_path: Path) -> None:
    raw, rows = export(tmp_path, *DAY)
    text = raw.decode()
    for needle in (planted.mi_text, planted.ae_text, "seizure", "9 year old", "Too many messages",
                   "1 Canary Lane", planted.email, planted.phone):
        assert needle not in text
    [mi] = [r for r in mine(rows, planted) if r["type"] == "interaction" and r["kind"] == "medical_inquiry"]
    assert set(mi["attributes"]) == {"reference", "product", "answered_at"}


def test_the_same_window_gives_the_same_bytes_and_overlaps_agree(planted: Planted, cli_db: None,
                                                                  tmp_path: Path) -> None:
    first, rows = export(tmp_path, *DAY)
    second, _ = export(tmp_path, *DAY)
    assert first == second
    _, wider = export(tmp_path, "--since", (T0 - timedelta(days=3)).isoformat(),
                      "--until", (T0 + timedelta(days=3)).isoformat())
    by_id = {r["id"]: r for r in wider}
    assert all(by_id[r["id"]] == r for r in mine(rows, planted))


def test_a_later_status_change_is_exported_again_under_the_same_id(planted: Planted, engine: Engine, cli_db: None,
                                                                   tmp_path: Path) -> None:
    done = T0 + timedelta(days=5, hours=3)
    with unit_of_work(sessionmaker(bind=engine)) as s:
        req = s.get_one(ServiceRequest, planted.service_request_id)
        req.status, req.completed_at = RequestStatus.resolved, done
    _, rows = export(tmp_path, "--since", done.date().isoformat(), "--until",
                     (done + timedelta(days=1)).date().isoformat())
    [again] = [r for r in mine(rows, planted) if r["type"] == "interaction"]
    assert again["id"] == f"service_request:{planted.service_request_id}"
    assert again["status"] == "resolved" and again["updated_at"] == done.isoformat()
    assert [r["type"] for r in mine(rows, planted)].count("hcp") == 1


def test_an_erased_hcp_is_exported_as_erased_for_the_crm_to_follow(planted: Planted, cli_db: None,
                                                                   tmp_path: Path) -> None:
    assert main(["hcp", "erase", planted.hcp_id, "--yes"]) == 0
    _, rows = export(tmp_path, "--since", "2026-01-01", "--until", "2100-01-01")
    [account] = [r for r in mine(rows, planted) if r["type"] == "hcp"]
    assert account == {"type": "hcp", "id": f"hcp:{planted.hcp_id}", "hcp_id": planted.hcp_id, "erased": True,
                       "erased_at": account["erased_at"], "schema": "crm-export/1"}
    assert planted.name not in json.dumps(rows)


@pytest.mark.parametrize(("args", "says"), [
    (["--since", "yesterday"], "not an ISO date"),
    (["--since", "2026-09-02", "--until", "2026-09-01"], "--until must be after --since"),
])
def test_a_bad_window_is_refused_and_writes_nothing(args: list[str], says: str, cli_db: None, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crm.jsonl"
    try:
        code = main(["export", "crm", *args, "--out", str(out)])
    except SystemExit as exc:  # argparse refuses an unparseable date itself
        code = int(exc.code or 0)
    assert code == 2 and not out.exists()
    assert says in capsys.readouterr().err
