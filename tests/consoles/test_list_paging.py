"""Console lists page through everything: nothing past the first page is out of reach.

Lists are ordered by urgency, so page 1 is what needs doing first; the page size is shrunk to 2
here so a handful of rows spans several pages. The shared test database holds other tests' rows
too, so each test walks every page and checks its own rows are all there, each exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.requests import desk
from api.safety import review
from api.safety.screen import ScreenResult
from api.settings import Settings
from tests.consoles.conftest import StaffAccount
from tests.consoles.review_fixtures import ReviewWorld, review_world, unique
from tests.consoles.test_handoffs_service import _conv, _staff
from tests.consoles.test_requests_desk import NOW, _request

JSON = {"accept": "application/json"}
SIZE = 2


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount],
          monkeypatch: pytest.MonkeyPatch) -> Iterator[ReviewWorld]:
    monkeypatch.setattr(review, "MAX_LIST", SIZE)
    monkeypatch.setattr(desk, "MAX_LIST", SIZE)
    yield from review_world(engine, settings, make_staff)


def _walk_api(client: TestClient, url: str, key: str, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    offset: int | None = 0
    while offset is not None:
        res = client.get(url, params={**params, "offset": offset}, headers=JSON)
        assert res.status_code == 200, res.text
        body = res.json()
        ids = [row["id"] for row in body[key]]
        assert len(ids) <= SIZE
        if body["next_offset"] is not None:
            assert len(ids) == SIZE and body["next_offset"] == offset + SIZE
        pages.append(ids)
        offset = body["next_offset"]
        assert len(pages) < 10_000
    return pages


def _walk_html(client: TestClient, url: str, pattern: str) -> list[list[str]]:
    pages: list[list[str]] = []
    next_url: str | None = url
    while next_url is not None:
        res = client.get(next_url)
        assert res.status_code == 200, res.text
        pages.append(re.findall(pattern, res.text))
        found = re.search(r'<a href="([^"]+)" rel="next">', res.text)
        if len(pages) > 1:
            assert 'rel="prev"' in res.text
        next_url = found.group(1).replace("&amp;", "&") if found else None
        assert len(pages) < 10_000
    return pages


def _flat(pages: list[list[str]]) -> list[str]:
    return [i for page in pages for i in page]


def test_the_safety_list_pages_through_every_open_case_once(world: ReviewWorld) -> None:
    mine = []
    for n in range(3):
        text = f"patient had a rash after the injection {unique()} #{n}"
        world.screen.script[text] = ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.9,
                                                 products=("cardiovex",))
        chat = world.chat()
        chat.say(text)
        mine.append(world.case_for(chat.conversation_id).id)
    client, _account, _csrf = world.staff_client("safety")

    api_pages = _walk_api(client, "/api/staff/safety/cases", "cases", status="open")
    ids = _flat(api_pages)
    assert len(ids) == len(set(ids)) and set(mine) <= set(ids)
    assert len(api_pages) >= 2

    html_pages = _walk_html(client, "/console/safety?status=open", r'data-case="([^"]+)"')
    assert _flat(html_pages) == ids                      # the pages show the same rows in the same order
    first = client.get("/console/safety?status=open").text
    assert "status=open&amp;page=2" in first and "1–2" in first


def test_the_medical_list_pages_through_every_inquiry_once(world: ReviewWorld) -> None:
    mine = []
    for n in range(3):
        text = f"can it be used in children under 12? {unique()} #{n}"
        world.screen.script[text] = ScreenResult(off_label=True, products=("cardiovex",),
                                                 off_label_reasons=("population",))
        chat = world.chat()
        chat.say(text)
        mine.append(world.inquiry_for(chat.conversation_id).id)
    client, _account, _csrf = world.staff_client("medical_reviewer")
    ids = _flat(_walk_api(client, "/api/staff/medical/inquiries", "inquiries", status="open"))
    assert len(ids) == len(set(ids)) and set(mine) <= set(ids)


@pytest.mark.parametrize(("role", "url"), [("safety", "/console/safety?page=0"),
                                         ("medical_reviewer", "/console/medical?page=-1"),
                                         ("rep", "/console/requests?page=x"),
                                         ("safety", "/api/staff/safety/cases?offset=-1"),
                                         ("rep", "/api/staff/requests?offset=abc")])
def test_a_bad_page_or_offset_is_a_clear_422(world: ReviewWorld, role: str, url: str) -> None:
    client, _account, _csrf = world.staff_client(role)
    res = client.get(url, headers=JSON)
    assert res.status_code == 422


def test_service_request_pages_are_disjoint_slices_of_the_same_order(session: Session) -> None:
    conv = _conv(session)
    mine = {_request(session, conv).id for _ in range(5)}
    rep = _staff(session, "rep")
    whole = [e.request.id for e in desk.list_requests(session, rep, now=NOW, limit=100_000)]
    pages = [[e.request.id for e in desk.list_requests(session, rep, now=NOW, limit=SIZE, offset=o)]
             for o in range(0, len(whole) + SIZE, SIZE)]
    assert _flat(pages) == whole and mine <= set(whole)
