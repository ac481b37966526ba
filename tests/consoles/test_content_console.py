"""The content console: upload/validate/load a library, item history, withdrawal (bot and outbox), gaps.

Items loaded here carry unique ids; demo items are never withdrawn (other tests rely on them).
"""

from __future__ import annotations

import io
import json
import re
import stat
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.conversations import service as conversations
from api.conversations.models import Message, MessageStatus, OutboxItem, OutboxStatus
from api.conversations.outbound import send_staff_content
from api.db import unit_of_work
from api.pipeline.delivery import deliver_after_commit
from api.settings import Settings
from api.staff.models import StaffRole
from knowledge import admin as kadmin
from knowledge import engine as kengine
from knowledge.embedding import HashingEmbedder, NumpyVectorIndex
from knowledge.engine import KnowledgeBase
from knowledge.models import Answer, ContentVersion
from knowledge.policy import AnswerPolicy, Calibrator
from knowledge.service import Recipient, answer_question
from tests.consoles.conftest import StaffAccount

Client = tuple[TestClient, StaffAccount, str]
UPLOAD_REF = re.compile(r'name="upload" value="([0-9a-f]{64})"')


def new_id(prefix: str = "UP") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def item(**over: Any) -> dict[str, Any]:
    cid = over.pop("id", None) or new_id()
    word = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {
        "id": cid, "version": 1, "title": f"Zentrofil storage {word}", "product": f"zentrofil{word}",
        "kind": "faq", "audience": ["hcp"], "markets": ["US", "GB"], "status": "approved",
        "approval_code": f"APP-{cid}", "approved_at": "2020-01-01", "expires_at": "2099-12-31",
        "questions": [f"How should zentrofil{word} vials be stored?"],
        "body": f"Store zentrofil{word} vials in a refrigerator at 2-8 °C in the original carton.",
    }
    out.update(over)
    return out


def jsonl(*items: dict[str, Any]) -> bytes:
    return "".join(json.dumps(i) + "\n" for i in items).encode()


def yaml_text(it: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(it, sort_keys=False, allow_unicode=True))


def make_zip(members: dict[str, str | bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, body)
    return buf.getvalue()


@pytest.fixture()
def factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture()
def fake_index(settings: Settings, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> KnowledgeBase:
    """The api's knowledge base for this test's index dir: fast hashing embedder, numpy index."""
    cal = Calibrator((20.0, 0.0, 0.0, 0.0), -14.0, 0.5)
    kb = KnowledgeBase(tmp_path / "kb", embedder=HashingEmbedder(), index_factory=NumpyVectorIndex,
                       policy=AnswerPolicy(0.05, {"hybrid": cal, "bm25": cal, "dense": cal}))
    monkeypatch.setitem(kengine._INSTANCES, settings.resolved_index_dir.resolve(), kb)
    return kb


@pytest.fixture()
def admin_client(fake_index: KnowledgeBase, logged_in: Callable[..., Client]) -> Iterator[Client]:
    """A logged-in content admin; background index refreshes are finished before the fake index goes."""
    client = logged_in("content_admin")
    yield client
    refresher = client[0].app.state.concierge.knowledge_refresher  # type: ignore[attr-defined]
    if refresher is not None:
        assert refresher.wait(60)


def upload(client: TestClient, csrf: str, filename: str, data: bytes, action: str = "validate") -> Any:
    return client.post("/console/content/library", data={"csrf_token": csrf, "action": action},
                       files={"library": (filename, data, "application/octet-stream")})


def versions_of(factory: sessionmaker[Session], content_id: str) -> list[tuple[int, bool, str]]:
    with factory() as s:
        return [(v.version, v.is_current, v.status) for v in s.scalars(
            select(ContentVersion).where(ContentVersion.content_id == content_id).order_by(ContentVersion.version))]


def audits(factory: sessionmaker[Session], action: str, subject_id: str | None = None) -> list[AuditEvent]:
    with factory() as s:
        q = select(AuditEvent).where(AuditEvent.action == action)
        if subject_id is not None:
            q = q.where(AuditEvent.subject_id == subject_id)
        return list(s.scalars(q.order_by(AuditEvent.seq)))


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# -- access ---------------------------------------------------------------------------------------

def test_only_content_admins_reach_the_content_console_pages_json_and_actions(
        logged_in: Callable[..., Client], fake_index: KnowledgeBase) -> None:
    guessed = "CVX-001"  # a real demo item id: a role without access must not even learn it exists
    for role in StaffRole:
        client, _acc, csrf = logged_in(str(role))
        got = {
            "page": client.get("/console/content").status_code,
            "item": client.get(f"/console/content/items/{guessed}").status_code,
            "gaps": client.get("/console/content/gaps").status_code,
            "json": client.get("/api/staff/content/items", headers={"accept": "application/json"}).status_code,
            "json_item": client.get(f"/api/staff/content/items/{guessed}",
                                    headers={"accept": "application/json"}).status_code,
            # a content admin's withdrawal would succeed and withdraw a demo item other tests answer with:
            # an empty reason is refused after the role gate, so no role can withdraw anything here
            "withdraw": client.post(f"/console/content/items/{guessed}/withdraw",
                                    data={"csrf_token": csrf, "reason": ""}).status_code,
            "upload": upload(client, csrf, "x.jsonl", jsonl(item())).status_code,
            "load": client.post("/console/content/library/load",
                                data={"csrf_token": csrf, "upload": "0" * 64, "filename": "x.jsonl"}).status_code,
            "cancel": client.post("/console/content/library/cancel",
                                  data={"csrf_token": csrf, "upload": "0" * 64, "filename": "x.jsonl"}).status_code,
        }
        if role == StaffRole.content_admin:
            assert got["page"] == got["gaps"] == got["json"] == 200
            assert got["upload"] == 200 and got["load"] == got["cancel"] == 404
            assert got["withdraw"] in (404, 422)  # 404 when the demo library is not loaded in this database
        else:
            assert set(got.values()) == {403}, (role, got)
    with sessionmaker(bind=client.app.state.concierge.engine)() as s:  # type: ignore[attr-defined]
        assert not s.scalars(select(AuditEvent).where(AuditEvent.action == "content.withdrawn",
                                                      AuditEvent.subject_id == guessed)).first()


def test_forms_without_the_csrf_token_are_refused(admin_client: Client, factory: sessionmaker[Session]) -> None:
    client, _acc, _csrf = admin_client
    it = item()
    res = client.post("/console/content/library", data={"action": "load"},
                      files={"library": ("lib.jsonl", jsonl(it), "application/octet-stream")})
    assert res.status_code == 403
    assert versions_of(factory, it["id"]) == []


# -- upload, validate, load ----------------------------------------------------------------------

def test_validate_reports_what_would_change_and_loads_nothing(admin_client: Client,
                                                               factory: sessionmaker[Session]) -> None:
    client, account, csrf = admin_client
    a, b = item(), item()
    data = jsonl(a, b)
    res = upload(client, csrf, "library.jsonl", data)
    assert res.status_code == 200, res.text
    assert "is valid" in res.text and "Nothing is loaded until you press Load" in res.text
    assert f"{a['id']}@1" in res.text and f"{b['id']}@1" in res.text
    assert sha256(data) in res.text
    assert versions_of(factory, a["id"]) == [] and versions_of(factory, b["id"]) == []
    [event] = audits(factory, "content.library_validated", sha256(data))
    assert event.actor_id == account.id and event.data["filename"] == "library.jsonl"


def test_load_applies_a_jsonl_library_and_the_running_index_picks_it_up(
        admin_client: Client, factory: sessionmaker[Session], fake_index: KnowledgeBase) -> None:
    client, account, csrf = admin_client
    it = item()
    data = jsonl(it)
    res = upload(client, csrf, "library.jsonl", data, action="load")
    assert res.status_code == 200, res.text
    assert "Loaded library.jsonl: 1 new version(s)" in res.text
    assert versions_of(factory, it["id"]) == [(1, True, "approved")]
    [event] = audits(factory, "content.library_loaded", sha256(data))
    assert event.actor_id == account.id and event.data["new_versions"] == [f"{it['id']}@1"]

    refresher = client.app.state.concierge.knowledge_refresher  # type: ignore[attr-defined]
    assert refresher.wait(60) and refresher.last_error is None
    indexed = {(d.id, d.version) for d in fake_index.retriever.docs}
    assert (it["id"], 1) in indexed  # rebuilt in the background, not on the bot's next question
    with factory() as s:
        decision = answer_question(s, fake_index, it["questions"][0], Recipient("US", "hcp", True),
                                   today=datetime.now(UTC).date())
        s.rollback()
    assert decision.decision == "answer" and decision.content_id == it["id"]


def test_validate_then_load_applies_exactly_the_validated_file(admin_client: Client,
                                                                factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    it = item()
    page = upload(client, csrf, "lib.jsonl", jsonl(it))
    ref = UPLOAD_REF.search(page.text)
    assert ref, page.text
    assert versions_of(factory, it["id"]) == []
    res = client.post("/console/content/library/load", data={"csrf_token": csrf, "upload": ref.group(1),
                                                             "filename": "lib.jsonl"})
    assert res.status_code == 200 and "Loaded lib.jsonl" in res.text
    assert versions_of(factory, it["id"]) == [(1, True, "approved")]
    again = client.post("/console/content/library/load", data={"csrf_token": csrf, "upload": ref.group(1),
                                                               "filename": "lib.jsonl"})
    assert again.status_code == 404 and "upload the file again" in again.text
    traversal = client.post("/console/content/library/load", data={"csrf_token": csrf, "upload": "../../etc/passwd",
                                                                   "filename": "lib.jsonl"})
    assert traversal.status_code == 422


def test_a_zip_of_a_yaml_directory_with_products_loads(admin_client: Client,
                                                        factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    a, b = item(), item(questions=[])
    products = {"products": {a["product"]: {"display_name": "Zentrofil", "safety_statement": "See the label.",
                                            "indications": {"US": ["testing"]}}}}
    import yaml

    data = make_zip({
        "library/": b"",
        f"library/{a['id']}.yaml": yaml_text(a),
        f"library/{b['id']}.yaml": yaml_text(b),
        "library/products.yaml": yaml.safe_dump(products),
        "library/README.txt": "not part of the library",
        "__MACOSX/library/._x.yaml": b"\x00\x05",
    })
    res = upload(client, csrf, "library.zip", data, action="load")
    assert res.status_code == 200, res.text
    assert versions_of(factory, a["id"]) == [(1, True, "approved")]
    assert versions_of(factory, b["id"]) == [(1, True, "approved")]
    assert audits(factory, "content.library_loaded", sha256(data))


def test_an_invalid_library_is_explained_by_file_and_line_and_nothing_is_loaded(
        admin_client: Client, factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    good = item()
    missing = item()
    del missing["body"]
    dup = item(id=good["id"])
    backwards = item(approved_at="2026-05-01", expires_at="2026-01-01")
    data = jsonl(good, missing, dup, backwards)
    res = upload(client, csrf, "broken.jsonl", data, action="load")
    assert res.status_code == 422
    assert "not a valid library: nothing was loaded" in res.text
    assert "broken.jsonl:2: missing field &#39;body&#39;" in res.text
    assert f"broken.jsonl:3: duplicate id &#39;{good['id']}&#39; (first at broken.jsonl:1)" in res.text
    assert "broken.jsonl:4: expires_at 2026-01-01 is before approved_at 2026-05-01" in res.text
    assert "library-upload-" not in res.text  # temporary paths are not shown
    for it in (good, missing, backwards):
        assert versions_of(factory, it["id"]) == []
    [event] = audits(factory, "content.library_rejected", sha256(data))
    assert event.data["error_count"] == 3


def test_an_invalid_yaml_item_in_a_zip_names_the_file_and_line(admin_client: Client,
                                                                factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    good, bad = item(), item(kind="leaflet")
    data = make_zip({f"{good['id']}.yaml": yaml_text(good), f"{bad['id']}.yaml": yaml_text(bad)})
    res = upload(client, csrf, "lib.zip", data, action="load")
    assert res.status_code == 422
    kind_line = yaml_text(bad).splitlines().index("kind: leaflet") + 1
    assert f"lib.zip/{bad['id']}.yaml:{kind_line}: unknown kind &#39;leaflet&#39;" in res.text
    assert versions_of(factory, good["id"]) == []


def test_a_changed_item_without_a_new_version_is_refused(admin_client: Client,
                                                          factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    it = item()
    assert upload(client, csrf, "v1.jsonl", jsonl(it), action="load").status_code == 200
    changed = {**it, "body": it["body"] + " Do not freeze."}
    res = upload(client, csrf, "v1b.jsonl", jsonl(changed))
    assert res.status_code == 422
    assert f"v1b.jsonl:1: {it['id']} version 1 is already loaded with different content; bump the version" \
        in res.text
    with factory() as s:
        [row] = s.scalars(select(ContentVersion).where(ContentVersion.content_id == it["id"]))
        assert row.body == it["body"]


# -- upload limits and unsafe archives -------------------------------------------------------------

def test_an_oversized_upload_is_refused_with_the_limit(admin_client: Client, factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    it = item()
    line = jsonl(it)
    just_over = line + b" " * (kadmin.MAX_UPLOAD_BYTES + 1 - len(line))
    res = upload(client, csrf, "big.jsonl", just_over, action="load")
    assert res.status_code == 413
    assert "the limit is 10 MB" in res.text
    way_over = line + b" " * (11 * 1024 * 1024)
    res = upload(client, csrf, "huge.jsonl", way_over, action="load")
    assert res.status_code == 413 and "larger than the 10 MB limit" in res.text
    assert versions_of(factory, it["id"]) == []
    assert audits(factory, "content.library_rejected", sha256(just_over))


@pytest.mark.parametrize("member, symlink, message", [
    ("../evil.yaml", False, "points outside the archive"),
    ("lib/../../evil.yaml", False, "points outside the archive"),
    ("/etc/evil.yaml", False, "is an absolute path"),
    ("lib\\..\\evil.yaml", False, "backslash"),
    ("link.yaml", True, "is a symbolic link"),
])
def test_a_zip_with_an_unsafe_member_is_rejected_whole(admin_client: Client, factory: sessionmaker[Session],
                                                       member: str, symlink: bool, message: str) -> None:
    client, _account, csrf = admin_client
    good = item()
    payload = "/etc/passwd" if symlink else yaml_text(item())
    data = make_zip({f"{good['id']}.yaml": yaml_text(good), member: payload}, symlinks=(member,) if symlink else ())
    res = upload(client, csrf, "slip.zip", data, action="load")
    assert res.status_code == 422
    assert message in res.text and "nothing was loaded" in res.text
    assert versions_of(factory, good["id"]) == []


def test_a_zip_bomb_stops_at_the_unpacked_limit(admin_client: Client, factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    good = item()
    bomb = make_zip({f"{good['id']}.yaml": yaml_text(good),
                     "padding.yaml": b"#" * (kadmin.MAX_UNPACKED_BYTES + 1)})
    assert len(bomb) < kadmin.MAX_UPLOAD_BYTES  # small on the wire
    res = upload(client, csrf, "bomb.zip", bomb, action="load")
    assert res.status_code == 413 and "unpacks to more than 50 MB" in res.text
    assert versions_of(factory, good["id"]) == []


def test_other_file_types_and_empty_files_are_refused(admin_client: Client) -> None:
    client, _account, csrf = admin_client
    res = upload(client, csrf, "library.csv", b"id,title\n")
    assert res.status_code == 422 and "upload a .jsonl library" in res.text
    assert upload(client, csrf, "empty.jsonl", b"").status_code == 422
    res = upload(client, csrf, "notazip.zip", b"PK but not really")
    assert res.status_code == 422 and "not a valid zip file" in res.text


# -- items, history, withdrawal ------------------------------------------------------------------

def test_item_history_shows_every_version_verbatim_after_a_new_version_is_loaded(
        admin_client: Client, factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    v1 = item()
    v2 = {**v1, "version": 2, "approval_code": v1["approval_code"] + "-2",
          "body": v1["body"] + " Once opened, use within 28 days & discard <the rest>."}
    assert upload(client, csrf, "v1.jsonl", jsonl(v1), action="load").status_code == 200
    assert upload(client, csrf, "v2.jsonl", jsonl(v2), action="load").status_code == 200
    assert versions_of(factory, v1["id"]) == [(1, False, "approved"), (2, True, "approved")]

    page = client.get(f"/console/content/items/{v1['id']}")
    assert page.status_code == 200
    assert "Current version: v2" in page.text and "History (2 versions)" in page.text
    assert v1["body"] in page.text
    assert "Once opened, use within 28 days &amp; discard &lt;the rest&gt;." in page.text  # escaped, verbatim
    listing = client.get("/console/content", params={"q": v1["id"]})
    assert listing.status_code == 200 and "(2 versions)" in listing.text and v2["approval_code"] in listing.text
    js = client.get(f"/api/staff/content/items/{v1['id']}", headers={"accept": "application/json"}).json()
    assert [(v["version"], v["current"], v["body"]) for v in js["versions"]] == [
        (2, True, v2["body"]), (1, False, v1["body"])]
    assert client.get("/console/content/items/NO-SUCH-ITEM").status_code == 404


def test_withdrawal_stops_the_bot_and_cancels_messages_already_queued(
        admin_client: Client, factory: sessionmaker[Session], fake_index: KnowledgeBase) -> None:
    client, account, csrf = admin_client
    it = item()
    assert upload(client, csrf, "lib.jsonl", jsonl(it), action="load").status_code == 200
    state = client.app.state.concierge  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with unit_of_work(factory) as s:  # a staff reply carrying the item, committed but not yet delivered
        conv, token = conversations.create_webchat(s, now=now, market="US")
        msg = send_staff_content(s, conv, staff_id=account.id, content_id=it["id"], version=1, now=now,
                                 default_market="US", purpose="test")
        conv_id, msg_id = conv.id, msg.id
    with factory() as s:
        before = answer_question(s, fake_index, it["questions"][0], Recipient("US", "hcp", True), today=now.date())
        s.rollback()
    assert before.content_id == it["id"]

    res = client.post(f"/console/content/items/{it['id']}/withdraw",
                      data={"csrf_token": csrf, "reason": "label change"})
    assert res.status_code == 303
    page = client.get(res.headers["location"])
    assert "Withdrawn: the bot no longer sends this item" in page.text and "label change" in page.text
    assert versions_of(factory, it["id"]) == [(1, True, "withdrawn")]
    [event] = audits(factory, "content.withdrawn", it["id"])
    assert event.actor_id == account.id and event.data["reason"] == "label change"

    deliver_after_commit(state, conv_id)
    with factory() as s:
        outbox = s.scalars(select(OutboxItem).where(OutboxItem.message_id == msg_id)).one()
        message = s.get(Message, msg_id)
        assert outbox.status == OutboxStatus.cancelled
        assert message is not None and message.status == MessageStatus.failed
        after = answer_question(s, fake_index, it["questions"][0], Recipient("US", "hcp", True), today=now.date())
        s.rollback()
    assert after.content_id != it["id"]
    assert all(c != it["id"] for c, _score in after.candidates)
    hcp_view = client.get(f"/api/webchat/sessions/{token}/messages").json()  # what the HCP's page polls
    assert "messages" in hcp_view and it["body"] not in json.dumps(hcp_view)

    again = client.post(f"/console/content/items/{it['id']}/withdraw", data={"csrf_token": csrf, "reason": "again"})
    assert again.status_code == 409 and "already withdrawn" in again.text


def test_a_withdrawal_needs_a_reason(admin_client: Client, factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    it = item()
    assert upload(client, csrf, "lib.jsonl", jsonl(it), action="load").status_code == 200
    res = client.post(f"/console/content/items/{it['id']}/withdraw", data={"csrf_token": csrf, "reason": "   "})
    assert res.status_code == 422 and "a withdrawal needs a reason" in res.text
    assert versions_of(factory, it["id"]) == [(1, True, "approved")]
    missing = client.post("/console/content/items/NO-SUCH-ITEM/withdraw", data={"csrf_token": csrf, "reason": "x"})
    assert missing.status_code == 404


def test_the_items_list_shows_versions_status_dates_markets_audience_and_code(
        admin_client: Client) -> None:
    client, _account, csrf = admin_client
    live = item(markets=["DE", "FR"], audience=["hcp", "patient"])
    expired = item(approved_at="2020-01-01", expires_at="2021-01-01")
    draft = item(status="draft")
    assert upload(client, csrf, "lib.jsonl", jsonl(live, expired, draft), action="load").status_code == 200
    page = client.get("/console/content", params={"q": "UP-"})
    assert page.status_code == 200
    rows = {cid: page.text.split(cid, 2)[2].split("</tr>", 1)[0] for cid in (live["id"], expired["id"], draft["id"])}
    assert "live" in rows[live["id"]] and "DE, FR" in rows[live["id"]] and "hcp, patient" in rows[live["id"]]
    assert live["approval_code"] in rows[live["id"]] and "2099-12-31" in rows[live["id"]]
    assert "expired" in rows[expired["id"]] and "2021-01-01" in rows[expired["id"]]
    assert "draft" in rows[draft["id"]]
    drafts = client.get("/console/content", params={"status": "draft", "q": draft["id"]})
    assert draft["id"] in drafts.text and live["id"] not in drafts.text


# -- the content-gap report -----------------------------------------------------------------------

def test_the_gap_report_groups_unanswered_questions_in_a_table(admin_client: Client,
                                                                factory: sessionmaker[Session]) -> None:
    client, account, _csrf = admin_client
    tag = uuid.uuid4().hex[:8]
    # every content word carries the tag: other tests' escalations (the DB is shared) cannot join the cluster
    questions = [f"is quoxaline{tag} safe in gravida{tag}", f"quoxaline{tag} gravida{tag} dossier{tag}",
                 f"quoxaline{tag} in gravida{tag}"]
    with unit_of_work(factory) as s:
        for q in questions:
            s.add(Answer(query=q, market="US", audience="hcp", verified=True, decision="escalate", score=0.1,
                         candidates=[], gated_count=0, created_at=datetime.now(UTC)))
    page = client.get("/console/content/gaps", params={"days": 7})
    assert page.status_code == 200
    table = page.text.split('<table class="gaps">', 1)[1]
    row = next(r for r in table.split("<tr>") if f"quoxaline{tag}" in r)
    cells = re.findall(r"<td>(.*?)</td>", row, flags=re.S)
    assert f"quoxaline{tag}" in cells[0] and cells[1] == "3" and cells[2] == "3"
    for q in questions:
        assert q in row
    events = audits(factory, "content.gap_report_viewed")
    assert any(e.actor_id == account.id and e.data["days"] == 7 for e in events)


def test_the_index_refresher_coalesces_requests_and_ends_idle(factory: sessionmaker[Session],
                                                               fake_index: KnowledgeBase) -> None:
    calls: list[int] = []

    class Counting:
        def sync(self, docs: Any) -> None:
            calls.append(len(docs))
            fake_index.sync(docs)

    refresher = kadmin.IndexRefresher(factory, lambda: Counting())  # type: ignore[arg-type,return-value]
    for _ in range(5):
        refresher.request()
    assert refresher.wait(60)
    assert 1 <= len(calls) <= 2 and refresher.runs == len(calls)
    refresher.request()
    assert refresher.wait(60) and refresher.runs == len(calls) >= 2
    with factory() as s:
        current = {(v.content_id, v.version) for v in s.scalars(
            select(ContentVersion).where(ContentVersion.is_current.is_(True)))}
    assert {(d.id, d.version) for d in fake_index.retriever.docs} == current


def test_a_yaml_alias_bomb_upload_is_refused_with_file_and_line_and_nothing_loaded(
        admin_client: Client, factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    good = item()
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 9)]
    bomb = "products:\n  zz:\n    display_name: Zz\n" + "\n".join(levels) + "\n"
    data = make_zip({f"lib/{good['id']}.yaml": yaml_text(good), "lib/products.yaml": bomb.encode()})
    res = upload(client, csrf, "bomb.zip", data, action="load")
    assert res.status_code == 422
    assert "bomb.zip/lib/products.yaml:" in res.text and "refused: the YAML expands to more than" in res.text
    assert versions_of(factory, good["id"]) == []


def test_a_jsonl_nesting_bomb_upload_is_a_4xx_naming_the_line(admin_client: Client,
                                                              factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    good = item()
    data = jsonl(good) + b'{"id": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n"
    res = upload(client, csrf, "deep.jsonl", data, action="load")
    assert res.status_code == 422
    assert "deep.jsonl:2: refused: the JSON is nested too deep" in res.text
    assert versions_of(factory, good["id"]) == []


# -- the impact replay on upload -------------------------------------------------------------------

REPLAY_ROW = re.compile(r"<tr>\s*<td>(.*?)</td>\s*<td>.*?</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*</tr>", re.S)


def replay_rows(page: str) -> dict[str, tuple[str, str]]:
    """question → (when asked, after the load) from the page's table of changed questions."""
    if '<table class="replay-changes">' not in page:
        return {}
    table = page.split('<table class="replay-changes">', 1)[1].split("</table>", 1)[0]
    plain = lambda cell: re.sub(r"<[^>]+>", "", cell).strip()  # noqa: E731
    return {plain(q): (plain(b), plain(a)) for q, b, a in REPLAY_ROW.findall(table)}


def replay_counts(factory: sessionmaker[Session], sha: str) -> list[dict[str, Any]]:
    return [e.data for e in audits(factory, "content.replay_shown", sha)]


def asked(factory: sessionmaker[Session], query: str, decision: str, content_id: str | None = None) -> None:
    with unit_of_work(factory) as s:
        s.add(Answer(query=query, market="US", audience="hcp", verified=True, decision=decision,
                     content_id=content_id, content_version=1 if content_id else None, score=0.9,
                     candidates=[], gated_count=0, created_at=datetime.now(UTC)))


@pytest.fixture()
def replayed_library(admin_client: Client, factory: sessionmaker[Session],
                     monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Three loaded items and four questions asked about them; a new file that withdraws the first and
    moves the second to another market. The new file is uploaded once before the questions are asked:
    the shared database holds other tests' questions, so tests compare the two reports."""
    from api.consoles import content

    monkeypatch.setattr(content, "REPLAY_MAX_QUESTIONS", 10**6)  # others' questions must not push ours out
    monkeypatch.setattr(content, "REPLAY_SHOWN_CHANGES", 10**6)
    client, _account, csrf = admin_client
    gone, moved, kept = item(), item(), item()
    assert upload(client, csrf, "v1.jsonl", jsonl(gone, moved, kept), action="load").status_code == 200
    new = jsonl({**gone, "version": 2, "status": "withdrawn"}, {**moved, "version": 2, "markets": ["DE"]},
                kept)
    before = upload(client, csrf, "v2.jsonl", new)
    assert before.status_code == 200, before.text
    tag = uuid.uuid4().hex[:8]
    questions = {
        "gone": f"{gone['questions'][0]} Call me back on +44 7700 900{int(tag, 16) % 1000:03d} ({tag})",
        "moved": f"{moved['questions'][0]} ({tag})",
        "kept": kept["questions"][0],  # its own question: answered alike however crowded the shared library is
        "never": f"book a table for four tonight {tag}",
    }
    asked(factory, questions["gone"], "answer", gone["id"])
    asked(factory, questions["moved"], "answer", moved["id"])
    asked(factory, questions["kept"], "answer", kept["id"])
    asked(factory, questions["never"], "escalate")
    return {"client": client, "csrf": csrf, "new": new, "questions": questions, "tag": tag,
            "ids": {"gone": gone["id"], "moved": moved["id"], "kept": kept["id"]}}


def test_an_upload_shows_which_recent_questions_the_new_library_answers_differently_before_loading(
        replayed_library: dict[str, Any], factory: sessionmaker[Session], fake_index: KnowledgeBase) -> None:
    client, csrf, new, ids = (replayed_library[k] for k in ("client", "csrf", "new", "ids"))
    questions = replayed_library["questions"]
    res = upload(client, csrf, "v2.jsonl", new)
    assert res.status_code == 200, res.text
    assert "Impact on recent questions" in res.text and "Load this library" in res.text
    baseline, report = replay_counts(factory, sha256(new))
    delta = {k: report[k] - baseline[k] for k in ("replayed", "answered", "answered_before", "escalated", "changed")}
    assert delta == {"replayed": 4, "answered": 1, "answered_before": 3, "escalated": 3, "changed": 2}
    assert report["days"] == 30 and report["capped"] is False

    rows = replay_rows(res.text)
    tag = replayed_library["tag"]
    mine = {q: outcome for q, outcome in rows.items() if tag in q}
    assert len(mine) == 2
    [gone_row] = [q for q in mine if "Call me back" in q]
    assert "+44 7700" not in res.text and "[phone]" in gone_row  # HCP free text is shown masked
    assert mine[gone_row] == (ids["gone"], "escalated")
    assert mine[questions["moved"]] == (ids["moved"], "escalated")
    for unchanged in (questions["kept"], questions["never"]):
        assert unchanged not in rows
    assert versions_of(factory, ids["gone"]) == [(1, True, "approved")]   # nothing is loaded yet
    assert versions_of(factory, ids["moved"]) == [(1, True, "approved")]
    assert all(q not in json.dumps(report) for q in questions.values())   # the audit keeps counts, not texts
    refresher = client.app.state.concierge.knowledge_refresher  # type: ignore[attr-defined]
    assert refresher.wait(60)
    live = {(d.id, d.version) for d in fake_index.retriever.docs}
    assert (ids["moved"], 1) in live and (ids["moved"], 2) not in live  # the bot's own index is not the replay's


def test_load_after_the_impact_report_applies_the_new_library(replayed_library: dict[str, Any],
                                                              factory: sessionmaker[Session]) -> None:
    client, csrf, new, ids = (replayed_library[k] for k in ("client", "csrf", "new", "ids"))
    ref = UPLOAD_REF.search(upload(client, csrf, "v2.jsonl", new).text)
    assert ref
    res = client.post("/console/content/library/load", data={"csrf_token": csrf, "upload": ref.group(1),
                                                             "filename": "v2.jsonl"})
    assert res.status_code == 200 and "Loaded v2.jsonl: 2 new version(s)" in res.text
    assert versions_of(factory, ids["gone"]) == [(1, False, "approved"), (2, True, "withdrawn")]
    assert versions_of(factory, ids["moved"]) == [(1, False, "approved"), (2, True, "approved")]
    assert versions_of(factory, ids["kept"]) == [(1, True, "approved")]


def test_cancel_after_the_impact_report_loads_nothing_and_forgets_the_file(
        replayed_library: dict[str, Any], factory: sessionmaker[Session]) -> None:
    client, csrf, new, ids = (replayed_library[k] for k in ("client", "csrf", "new", "ids"))
    ref = UPLOAD_REF.search(upload(client, csrf, "v2.jsonl", new).text)
    assert ref
    form = {"csrf_token": csrf, "upload": ref.group(1), "filename": "v2.jsonl"}
    assert client.post("/console/content/library/cancel", data={"upload": ref.group(1),
                                                                "filename": "v2.jsonl"}).status_code == 403
    res = client.post("/console/content/library/cancel", data=form)
    assert res.status_code == 303
    assert "Upload cancelled: nothing was loaded." in client.get(res.headers["location"]).text
    for cid in ids.values():
        assert versions_of(factory, cid) == [(1, True, "approved")]
    assert client.post("/console/content/library/load", data=form).status_code == 404
    assert versions_of(factory, ids["gone"]) == [(1, True, "approved")]
    [event] = audits(factory, "content.library_cancelled", sha256(new))
    assert event.data["filename"] == "v2.jsonl"


def test_an_invalid_upload_shows_its_errors_and_replays_nothing(admin_client: Client,
                                                                factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    broken = item()
    del broken["questions"]
    data = jsonl(item(), broken)
    res = upload(client, csrf, "broken.jsonl", data)
    assert res.status_code == 422 and "broken.jsonl:2: missing field &#39;questions&#39;" in res.text
    assert "Impact on recent questions" not in res.text and "Load this library" not in res.text
    assert replay_counts(factory, sha256(data)) == []
    loaded = item()
    assert upload(client, csrf, "v1.jsonl", jsonl(loaded), action="load").status_code == 200
    conflict = jsonl({**loaded, "body": "Changed without a new version."})
    assert upload(client, csrf, "conflict.jsonl", conflict).status_code == 422
    assert replay_counts(factory, sha256(conflict)) == []


def test_an_upload_identical_to_the_loaded_library_changes_no_answer(
        admin_client: Client, factory: sessionmaker[Session], fake_index: KnowledgeBase) -> None:
    client, _account, csrf = admin_client
    it = item()
    data = jsonl(it)
    assert upload(client, csrf, "lib.jsonl", data, action="load").status_code == 200
    refresher = client.app.state.concierge.knowledge_refresher  # type: ignore[attr-defined]
    assert refresher.wait(60)
    tag = uuid.uuid4().hex[:8]
    with unit_of_work(factory) as s:  # asked for real: the answer rows say what the bot decided
        for q in (f"{it['questions'][0]} {tag}", f"order a pizza {tag}"):
            answer_question(s, fake_index, q, Recipient("US", "hcp", True), today=datetime.now(UTC).date())
    res = upload(client, csrf, "lib.jsonl", data)
    assert res.status_code == 200
    assert "Nothing new to load." in res.text
    assert not [q for q in replay_rows(res.text) if tag in q]
    [report] = replay_counts(factory, sha256(data))
    assert report["replayed"] >= 2 and report["answered"] + report["escalated"] == report["replayed"]


def test_a_replay_over_the_question_cap_says_so(admin_client: Client, factory: sessionmaker[Session],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from api.consoles import content

    monkeypatch.setattr(content, "REPLAY_MAX_QUESTIONS", 2)
    monkeypatch.setattr(content, "REPLAY_SHOWN_CHANGES", 1)
    client, _account, csrf = admin_client
    it = item()
    assert upload(client, csrf, "v1.jsonl", jsonl(it), action="load").status_code == 200
    tag = uuid.uuid4().hex[:8]
    for n in range(3):
        asked(factory, f"{it['questions'][0]} {n} {tag}", "answer", it["id"])
    data = jsonl({**it, "version": 2, "status": "withdrawn"})
    res = upload(client, csrf, "v2.jsonl", data)
    assert res.status_code == 200
    [report] = replay_counts(factory, sha256(data))
    assert report["capped"] is True and report["replayed"] == 2 and report["asked"] >= 3
    text = " ".join(res.text.split())
    assert f"Only the 2 most recent of {report['asked']} questions were replayed" in text
    rows = replay_rows(res.text)
    assert list(rows) == [f"{it['questions'][0]} 2 {tag}"]  # the most recent change, then a count of the rest
    assert "… and 1 more changed question(s) not listed" in text


def test_the_replay_window_is_chosen_on_the_upload_form(admin_client: Client, factory: sessionmaker[Session]) -> None:
    client, _account, csrf = admin_client
    assert 'name="days"' in client.get("/console/content").text
    data = jsonl(item())
    for sent, used in (("7", 7), ("90", 90), ("100000", 30), ("-1", 30)):
        res = client.post("/console/content/library", data={"csrf_token": csrf, "days": sent},
                          files={"library": ("lib.jsonl", data, "application/octet-stream")})
        assert res.status_code == 200
        assert replay_counts(factory, sha256(data))[-1]["days"] == used


def test_an_upload_with_more_new_items_than_can_be_indexed_in_the_request_skips_the_replay_and_says_so(
        admin_client: Client, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    from api.consoles import content

    monkeypatch.setattr(content, "REPLAY_MAX_NEW_ITEMS", 1)
    client, _account, csrf = admin_client
    data = jsonl(item(), item())
    res = upload(client, csrf, "big.jsonl", data)
    assert res.status_code == 200 and "Load this library" in res.text
    text = " ".join(res.text.split())
    assert "Not replayed here: the file brings 2 new or changed items, more than the 1" in text
    assert "concierge knowledge replay --library big.jsonl" in text
    assert replay_counts(factory, sha256(data)) == []
    [event] = audits(factory, "content.replay_skipped", sha256(data))
    assert (event.data["new_versions"], event.data["limit"]) == (2, 1)
