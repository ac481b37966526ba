"""Auto-assignment (api.handoffs.assign): who a waiting handoff is offered to, in what order, under
what capacity; what happens when an offer runs out, is declined, or a colleague claims first; and
what the HCP is told when nobody is at their desk. Each test works inside one rolled-back
transaction; the staff it makes are the only ones online there."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.errors import InvalidInput
from api.handoffs import assign
from api.handoffs import service as handoffs
from api.handoffs.assign import AssignPolicy
from api.handoffs.errors import AtCapacity, NotOffered
from api.handoffs.models import Handoff, HandoffOffer, HandoffStatus
from api.hcps.models import Hcp
from api.staff.models import StaffUser
from api.staff.service import StaffIdentity
from feedback import service as feedback
from tests.consoles.handoff_factory import MONDAY_MORNING

ON = AssignPolicy(enabled=True, offer_timeout=timedelta(minutes=2), max_open=4)


def _person(session: Session, *roles: str, presence: str = "online", max_open: int | None = None,
            markets: list[str] | None = None, languages: list[str] | None = None,
            territory: str | None = None, name: str | None = None) -> StaffUser:
    user = StaffUser(email=f"{uuid.uuid4().hex[:10]}@halcyon.example", name=name or f"Kim {uuid.uuid4().hex[:4]}",
                     password_hash="x", roles=list(roles or ("rep",)), territory=territory, active=True,
                     available=True, presence=presence, max_open=max_open, markets=markets, languages=languages,
                     created_at=MONDAY_MORNING)
    session.add(user)
    session.flush()
    return user


def _ident(user: StaffUser) -> StaffIdentity:
    return StaffIdentity(id=user.id, email=user.email, name=user.name, roles=frozenset(user.roles),
                         territory=user.territory, session_id="s", csrf_token="c")


def _conv(session: Session, market: str = "GB", language: str | None = None, hcp: Hcp | None = None) -> Conversation:
    conv, _ = conversations.create_webchat(session, now=MONDAY_MORNING, market=market)
    if hcp is not None:
        conv.hcp_id = hcp.id
    session.flush()
    if language:
        feedback.set_preference(session, conv, name="language", value=language, message_id=None, now=MONDAY_MORNING)
    return conv


def _open(session: Session, *, at: datetime = MONDAY_MORNING, policy: AssignPolicy = ON, target: str = "rep",
          **conv: object) -> Handoff:
    return handoffs.open_handoff(session, _conv(session, **conv), target=target,  # type: ignore[arg-type]
                                 reason="hcp_request", now=at, policy=policy)


def _actions(session: Session, handoff: Handoff) -> list[tuple[str, str | None]]:
    rows = session.execute(select(AuditEvent).where(AuditEvent.subject_id == handoff.id).order_by(AuditEvent.seq))
    return [(e.action, (e.data or {}).get("staff_id")) for e in rows.scalars()]


def test_offers_go_round_the_team_least_recently_offered_first(session: Session) -> None:
    team = sorted((_person(session, "rep", markets=["QA"]) for _ in range(3)), key=lambda u: u.id)
    got = []
    for i in range(7):
        h = _open(session, at=MONDAY_MORNING + timedelta(seconds=i), market="QA")
        got.append(h.offered_to)
    ids = [u.id for u in team]
    assert got == ids + ids + ids[:1]  # everyone once before anyone twice, in a stable order
    assert h.status == HandoffStatus.queued and h.offer_expires_at == (
        MONDAY_MORNING + timedelta(seconds=6) + ON.offer_timeout)
    assert ("handoff.offered", ids[0]) in _actions(session, h)


def test_the_hcps_own_rep_is_offered_first_when_online(session: Session) -> None:
    _person(session, "rep", markets=["QB"])
    own = _person(session, "rep", markets=["QB"])
    hcp = Hcp(name="Dr Own", country="GB", created_at=MONDAY_MORNING, assigned_rep_id=own.id)
    session.add(hcp)
    session.flush()
    assert _open(session, market="QB", hcp=hcp).offered_to == own.id


def test_only_people_who_serve_the_market_the_language_and_the_team_are_offered(session: Session) -> None:
    german = _person(session, "rep", markets=["DE"])
    french = _person(session, "rep", markets=["DE", "FR"], languages=["fr"])
    msl = _person(session, "msl", markets=["DE", "FR"])
    away = _person(session, "rep", markets=["DE", "FR"], presence="away")
    french_hcp = _open(session, market="FR", language="fr")
    assert french_hcp.offered_to == french.id
    assert {u.id for u in assign.candidates(session, french_hcp)} == {french.id}
    german_hcp = _open(session, market="DE", language="de")
    assert [u.id for u in assign.candidates(session, german_hcp)] == [german.id]  # french speaks fr only
    for_msl = _open(session, market="DE", target="msl")
    assert for_msl.offered_to == msl.id
    assert away.id not in {u.id for u in assign.candidates(session, german_hcp)}


def test_a_territory_keeps_offers_to_its_own_hcps(session: Session) -> None:
    north = _person(session, "rep", markets=["QC"], territory="north")
    south_hcp = Hcp(name="Dr South", country="GB", territory="south", created_at=MONDAY_MORNING)
    session.add(south_hcp)
    session.flush()
    h = _open(session, market="QC", hcp=south_hcp)
    assert h.offered_to is None and north.id not in {u.id for u in assign.candidates(session, h)}


def test_nobody_is_offered_beyond_capacity_and_a_claim_at_capacity_is_refused(session: Session) -> None:
    rep = _person(session, "rep", max_open=2, markets=["QD"])
    first, second, third = (_open(session, market="QD") for _ in range(3))
    assert first.offered_to == rep.id and second.offered_to == rep.id
    assert third.offered_to is None and third.status == HandoffStatus.queued  # waits in the shared queue
    assert ("handoff.not_offered", None) in _actions(session, third)
    assert assign.load(session, rep.id) == 2
    handoffs.claim(session, first.id, _ident(rep), MONDAY_MORNING, ON)  # accepting keeps the load at 2
    assert assign.load(session, rep.id) == 2
    with pytest.raises(AtCapacity) as refused:
        handoffs.claim(session, third.id, _ident(rep), MONDAY_MORNING, ON)
    assert "limit is 2" in refused.value.message and third.reference in refused.value.message
    session.refresh(third)
    assert third.status == HandoffStatus.queued and third.claimed_by is None  # nothing lost
    # Without auto-assignment the claim works as it always did.
    handoffs.claim(session, third.id, _ident(rep), MONDAY_MORNING)
    assert third.claimed_by == rep.id


def test_everyone_away_leaves_the_handoff_queued_and_the_hcp_is_offered_a_callback(session: Session) -> None:
    from api.staff.models import Presence

    for user in session.execute(select(StaffUser).where(StaffUser.presence == Presence.online)).scalars():
        user.presence = Presence.away  # (inside this test's transaction only)
    _person(session, "rep", presence="away", markets=["QE"])
    _person(session, "rep", presence="offline", markets=["QE"])
    h = _open(session, market="QE")
    assert h.offered_to is None and h.status == HandoffStatus.queued
    draft = handoffs.reply_draft(session, h, now=MONDAY_MORNING, policy=ON)
    assert "nobody is free" in draft.text and {b.title for b in draft.buttons} >= {"Call me back"}
    assert ("handoff.not_offered", None) in _actions(session, h)
    queued = session.execute(select(AuditEvent).where(AuditEvent.subject_id == h.id,
                                                      AuditEvent.action == "handoff.queued")).scalar_one()
    assert queued.data["availability"] == "nobody_available"


def test_an_offer_not_accepted_in_time_moves_to_the_next_person(session: Session) -> None:
    team = sorted((_person(session, "rep", markets=["QF"]) for _ in range(2)), key=lambda u: u.id)
    h = _open(session, market="QF")
    assert h.offered_to == team[0].id
    assert not assign.expire(session, h.id, ON, MONDAY_MORNING + timedelta(minutes=1))  # not yet due
    later = MONDAY_MORNING + ON.offer_timeout
    assert assign.expire(session, h.id, ON, later)
    assert h.offered_to == team[1].id and h.offer_expires_at == later + ON.offer_timeout
    # The second person lets it lapse too: nobody left who has not had it, so it waits for a claim.
    assert assign.expire(session, h.id, ON, later + ON.offer_timeout)
    assert h.offered_to is None and h.status == HandoffStatus.queued
    outcomes = [r.outcome for r in session.execute(select(HandoffOffer).where(HandoffOffer.handoff_id == h.id)
                                                  .order_by(HandoffOffer.offered_at)).scalars()]
    assert outcomes == ["expired", "expired"]
    assert [a for a, _ in _actions(session, h) if a.startswith("handoff.offer")] == [
        "handoff.offered", "handoff.offer_expired", "handoff.offered", "handoff.offer_expired"]


def test_declining_moves_the_offer_on_and_a_second_decline_is_refused(session: Session) -> None:
    team = sorted((_person(session, "rep", markets=["QG"]) for _ in range(2)), key=lambda u: u.id)
    h = _open(session, market="QG")
    assign.decline(session, h.id, team[0].id, ON, MONDAY_MORNING)
    assert h.offered_to == team[1].id
    with pytest.raises(NotOffered):
        assign.decline(session, h.id, team[0].id, ON, MONDAY_MORNING)
    assert ("handoff.offer_declined", team[0].id) in _actions(session, h)


def test_a_colleague_may_still_claim_a_handoff_offered_to_someone_else(session: Session) -> None:
    offered, colleague = sorted((_person(session, "rep", markets=["QH"]) for _ in range(2)), key=lambda u: u.id)
    h = _open(session, market="QH")
    assert h.offered_to == offered.id
    handoffs.claim(session, h.id, _ident(colleague), MONDAY_MORNING, ON)
    assert h.claimed_by == colleague.id and h.offered_to is None
    assert assign.load(session, offered.id) == 0 and assign.load(session, colleague.id) == 1
    assert ("handoff.offer_withdrawn", offered.id) in _actions(session, h)
    with pytest.raises(NotOffered):
        assign.decline(session, h.id, offered.id, ON, MONDAY_MORNING)


def test_a_released_handoff_is_offered_to_someone_else_not_back_to_who_released_it(session: Session) -> None:
    first, second = sorted((_person(session, "rep", markets=["QK"]) for _ in range(2)), key=lambda u: u.id)
    h = _open(session, market="QK")
    handoffs.claim(session, h.id, _ident(first), MONDAY_MORNING, ON)
    handoffs.release(session, h.id, _ident(first), MONDAY_MORNING)
    assert h.status == HandoffStatus.queued and h.offered_to is None
    assert assign.offer_next(session, h, ON, MONDAY_MORNING, why="sweep") is not None
    assert h.offered_to == second.id
    assign.decline(session, h.id, second.id, ON, MONDAY_MORNING)
    assert h.offered_to is None  # both had their turn: it waits, and either may still claim it
    handoffs.claim(session, h.id, _ident(first), MONDAY_MORNING, ON)
    assert h.claimed_by == first.id


def test_an_hcp_who_cancels_frees_the_offered_person(session: Session) -> None:
    from api.handoffs import waiting

    rep = _person(session, "rep", markets=["QL"], max_open=1)
    h = _open(session, market="QL")
    conv = session.get(Conversation, h.conversation_id)
    assert conv is not None and h.offered_to == rep.id and assign.load(session, rep.id) == 1
    msg = conversations.persist_inbound(session, conv, text="never mind, sorted it", now=MONDAY_MORNING).message
    assert waiting.cancel(session, conv, msg, MONDAY_MORNING) is not None
    assert h.status == HandoffStatus.closed and h.offered_to is None and assign.load(session, rep.id) == 0
    assert ("handoff.offer_withdrawn", rep.id) in _actions(session, h)
    assert _open(session, market="QL").offered_to == rep.id  # room again for the next one


def test_going_away_hands_pending_offers_to_a_colleague(session: Session) -> None:
    first, second = sorted((_person(session, "rep", markets=["QI"]) for _ in range(2)), key=lambda u: u.id)
    h = _open(session, market="QI")
    assert h.offered_to == first.id
    moved = assign.set_presence(session, first, "away", ON, MONDAY_MORNING, actor_id=first.id)
    assert moved == [h.id] and h.offered_to == second.id
    with pytest.raises(InvalidInput, match="unknown presence"):
        assign.set_presence(session, first, "asleep", ON, MONDAY_MORNING, actor_id=first.id)
    assert first.presence == "away"


def test_switched_off_nothing_is_offered(session: Session) -> None:
    _person(session, "rep", markets=["QJ"])
    h = _open(session, market="QJ", policy=assign.OFF)
    assert h.offered_to is None and [a for a, _ in _actions(session, h)] == ["handoff.queued"]


def test_assignment_profile_is_checked_whole_and_audited(session: Session) -> None:
    admin = _person(session, "admin", presence="offline")
    rep = _person(session, "rep")
    assign.set_profile(session, rep, max_open=3, languages=["FR", " de ", ""], markets=["gb"], now=MONDAY_MORNING,
                       actor_id=admin.id)
    assert (rep.max_open, rep.languages, rep.markets) == (3, ["de", "fr"], ["GB"])
    for bad, words in (({"max_open": 0}, "between 1 and 100"), ({"markets": ["GBR"]}, "two-letter"),
                       ({"languages": ["<b>"]}, "codes such as")):
        change = {"max_open": 2, "languages": ["en"], "markets": ["DE"], **bad}
        with pytest.raises(InvalidInput, match=words):
            assign.set_profile(session, rep, now=MONDAY_MORNING, actor_id=admin.id, **change)  # type: ignore[arg-type]
        assert (rep.max_open, rep.languages, rep.markets) == (3, ["de", "fr"], ["GB"])  # nothing half-applied
    assign.set_profile(session, rep, max_open=None, languages=[], markets=[], now=MONDAY_MORNING, actor_id=admin.id)
    assert assign.capacity(rep, ON) == ON.max_open
    trail = session.execute(select(AuditEvent).where(AuditEvent.subject_id == rep.id,
                                                     AuditEvent.action == "staff.assignment_profile")).scalars().all()
    assert [e.data["after"]["max_open"] for e in trail] == [3, None]
