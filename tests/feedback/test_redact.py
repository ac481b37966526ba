"""PII redaction: a canary corpus in which nothing may survive, and ordinary HCP text that must."""

from __future__ import annotations

import logging

import pytest

from api.app import create_app
from api.settings import Settings
from feedback.redact import (
    DOB,
    EMAIL,
    LICENCE,
    NAME,
    PHONE,
    RedactingFilter,
    install_log_redaction,
    redact,
    redact_log_text,
    uninstall_log_redaction,
)

# (message, canaries that must not survive, placeholder expected)
CANARIES: list[tuple[str, list[str], str]] = [
    # phone numbers
    ("Please call me on +44 7700 900123 after 6pm", ["7700", "900123"], PHONE),
    ("my mobile is 07700 900456", ["07700", "900456"], PHONE),
    ("Ring the practice: 020 7946 0958", ["7946", "0958"], PHONE),
    ("US office (415) 555-0132, ext 12", ["555-0132", "415"], PHONE),
    ("reach me at 415-555-0198 any time", ["555-0198"], PHONE),
    ("Tel. +1 212 555 0147", ["555 0147"], PHONE),
    ("Praxis: 030 12345678, Handy 0151 23456789", ["12345678", "23456789"], PHONE),
    ("Rufnummer +49 (0)30 901820", ["901820"], PHONE),
    ("+49 151 2345 6789 ist meine Nummer", ["2345 6789"], PHONE),
    ("0044 20 7946 0321 is the switchboard", ["7946 0321"], PHONE),
    ("reply to whatsapp:+447700900789 please", ["447700900789", "900789"], PHONE),
    ("text me on 7700900111", ["7700900111"], PHONE),
    ("my number: 555 0182", ["555 0182"], PHONE),
    ("call 01632 960001 for the clinic", ["960001"], PHONE),
    ("+33 1 23 45 67 89 is my Paris line", ["45 67 89"], PHONE),
    ("020.7946.0958 is the office", ["7946.0958"], PHONE),
    ("+44 (0) 20 7946 0612", ["7946 0612"], PHONE),
    ("mob: 07 700 900 123", ["900 123"], PHONE),
    # e-mail addresses
    ("write to anna.schmidt@klinikum-example.de", ["anna.schmidt", "klinikum-example"], EMAIL),
    ("My email: j.smith+hcp@nhs.net thanks", ["j.smith", "hcp@nhs"], EMAIL),
    ("contact drpatel [at] example [dot] org", ["drpatel"], EMAIL),
    ("DOCTOR.WHO@EXAMPLE.COM wrote", ["DOCTOR.WHO"], EMAIL),
    ("email: frontdesk at praxis-lenz dot de", ["frontdesk", "praxis-lenz"], EMAIL),
    # names of people
    ("Dr Eleanor Whitfield asked about the dose", ["Eleanor", "Whitfield"], NAME),
    ("Thanks, Dr. Okonkwo", ["Okonkwo"], NAME),
    ("Prof. Hartmut Zöllner from the Charité", ["Hartmut", "Zöllner"], NAME),
    ("Mrs O'Sullivan-Reyes needs a callback", ["O'Sullivan", "Reyes"], NAME),
    ("Ms Priyanka Ramanathan is my colleague", ["Priyanka", "Ramanathan"], NAME),
    ("my name is Tobias Wendeler", ["Tobias", "Wendeler"], NAME),
    ("my name is jonah fairbrother", ["jonah"], NAME),
    ("Hi, I'm Sarah Kettleborough, a GP in Leeds", ["Sarah", "Kettleborough"], NAME),
    ("I'm Fiona and I prescribe Glucorel", ["Fiona"], NAME),
    ("this is Marcus Ellingham from the cardiology ward", ["Marcus", "Ellingham"], NAME),
    ("Kind regards,\nRebecca Thornbury", ["Rebecca", "Thornbury"], NAME),
    ("Best wishes, Anja", ["Anja"], NAME),
    ("Cheers - Gideon Blackwood", ["Gideon", "Blackwood"], NAME),
    ("ask for dr smith at reception", ["smith"], NAME),
    ("Mein Name ist Kerstin Vogelsang", ["Kerstin", "Vogelsang"], NAME),
    ("Herr Brenninkmeyer hat angerufen", ["Brenninkmeyer"], NAME),
    ("please pass this to Michael Thompson in pharmacy", ["Michael", "Thompson"], NAME),
    ("Xiomara Patel will follow up", ["Xiomara", "Patel"], NAME),
    ("Nurse Bettany called twice", ["Bettany"], NAME),
    ("Dr.Schulzendorf called", ["Schulzendorf"], NAME),
    ("Prof Dr Hannelore Brückner will reply", ["Hannelore", "Brückner"], NAME),
    ("Mr and Mrs Abernathy-Quist asked", ["Abernathy", "Quist"], NAME),
    ("ask Dr. Grey and Prof Lindqvist", ["Grey", "Lindqvist"], NAME),
    ("Thanks! -- Ottilie", ["Ottilie"], NAME),
    ("Signed: Amelia Fairweather", ["Amelia", "Fairweather"], NAME),
    ("Patient: John Doe, 54", ["John", "Doe"], NAME),
    ("the rep Jonas never called back", ["Jonas"], NAME),
    ("my colleague Ottoline Brisbane-Fitch will call", ["Ottoline", "Brisbane"], NAME),
    # licence / registration numbers
    ("My GMC number is 7123456", ["7123456"], LICENCE),
    ("GMC 6234567 - Dr Jones", ["6234567", "Jones"], LICENCE),
    ("NPI: 1234567893", ["1234567893"], LICENCE),
    ("npi 1982736450 for the prior auth", ["1982736450"], LICENCE),
    ("registration no. 99887766", ["99887766"], LICENCE),
    ("licence number AB-123456", ["123456"], LICENCE),
    ("my license # 55-443322", ["443322"], LICENCE),
    ("LANR 123456789 und BSNR 987654321", ["123456789", "987654321"], LICENCE),
    ("DEA number AB1234563", ["1234563"], LICENCE),
    ("reg no 456123", ["456123"], LICENCE),
    ("GMC:7281234", ["7281234"], LICENCE),
    # dates of birth
    ("patient DOB 12/03/1958, on Cardiovex", ["12/03/1958", "1958"], DOB),
    ("D.O.B.: 1961-07-04", ["1961-07-04"], DOB),
    ("she was born on 3rd March 1972", ["March 1972", "3rd"], DOB),
    ("born 14.02.1949, seen today", ["14.02.1949"], DOB),
    ("date of birth: July 9, 1980", ["July 9", "1980"], DOB),
    ("geb. 01.01.1950", ["01.01.1950"], DOB),
    ("04/11/1966 (date of birth)", ["04/11/1966"], DOB),
    ("I was born in 1975", ["1975"], DOB),
    ("her birthday is 21 August 1990", ["21 August 1990"], DOB),
]

# A mixed message: everything at once.
MIXED = ("Hello, this is Dr. Harriet Quennell (GMC 7654321), tel +44 20 7946 0777, "
         "email h.quennell@example.nhs.uk. Patient DOB 02/05/1947. Kind regards, Harriet Quennell")
MIXED_CANARIES = ["Harriet", "Quennell", "7654321", "7946", "h.quennell", "02/05/1947"]


@pytest.mark.parametrize(("text", "canaries", "placeholder"), CANARIES,
                         ids=[c[0][:30] for c in CANARIES])
def test_canary_is_masked(text: str, canaries: list[str], placeholder: str) -> None:
    out = redact(text)
    for canary in canaries:
        assert canary.lower() not in out.lower(), out
    assert placeholder in out, out


def test_no_canary_survives_the_whole_corpus() -> None:
    corpus = "\n".join([c[0] for c in CANARIES] + [MIXED])
    out = redact(corpus)
    survivors = [c for _, cs, _ in CANARIES for c in cs if c.lower() in out.lower()]
    survivors += [c for c in MIXED_CANARIES if c.lower() in out.lower()]
    assert survivors == []


def test_mixed_message_keeps_its_shape() -> None:
    out = redact(MIXED)
    assert out.startswith("Hello, this is Dr. [name]")
    assert "GMC [licence]" in out and "tel [phone]" in out and "email [email]" in out
    assert "DOB [dob]" in out


ORDINARY = [
    "What is the maximum dose of Cardiovex? Is 40 mg once daily the limit?",
    "Velostatin 20 mg with ciclosporin, is that right?",
    "Respizan (zelvamab) 100 mg every 4 weeks for severe eosinophilic asthma",
    "Glucorel 2 mg weekly with metformin 1000 mg twice daily",
    "I saw the patient on 12/03/2025 and again on 2025-04-01.",
    "Follow-up visit on 3 March 2025 went well.",
    "eGFR 45 ml/min, HbA1c 58 mmol/mol, LDL 3.2 mmol/L",
    "Trial enrolled 12500 patients between 2019-2023.",
    "Is it safe in Parkinson's disease or with Crohn's?",
    "The answer about Cardiovex was out of date.",
    "You are sending me too many messages, once a week is enough.",
    "I'm a GP in Manchester and I want to talk to a person.",
    "I'm not happy with the last answer about dosing.",
    "Thanks, very helpful!",
    "Can my rep call me back tomorrow morning?",
    "Cannot log in to the portal since Monday.",
    "Dose reduced from 40 mg to 20 mg after 6 weeks.",
    "The study had a hazard ratio of 0.85 (95% CI 0.76-0.94).",
    "Down syndrome patients were excluded from the study.",
    "Please send the SmPC for Glucorel to me by email.",
    "MS patients were not included.",
    "Store below 25 °C, shelf life 36 months.",
    "the MSL explained titration well",
    "the rep Monday visit was cancelled",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_hcp_text_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_redacting_twice_changes_nothing_more() -> None:
    once = redact(MIXED)
    assert redact(once) == once


def test_empty_text() -> None:
    assert redact("") == ""


@pytest.fixture()
def redacting_logs() -> object:
    install_log_redaction()
    yield
    uninstall_log_redaction()


def test_log_records_are_redacted(redacting_logs: object, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("concierge.test.redact")
    with caplog.at_level(logging.INFO, logger="concierge.test.redact"):
        logger.warning("twilio refused %s: %s", "whatsapp:+447700900555", "unknown number for Dr Penhaligon")
        try:
            raise ValueError("bad comment from anna.p@example.com, DOB 01/02/1970")
        except ValueError:
            logger.exception("comment failed")
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for canary in ("447700900555", "Penhaligon", "anna.p@example.com", "01/02/1970"):
        assert canary not in text
    assert "[phone]" in text and "Dr [name]" in text and "[email]" in text
    formatted = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert "anna.p@example.com" not in formatted and "ValueError" in formatted


def test_access_log_client_addresses_are_masked(redacting_logs: object, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logger.info('%s - "%s %s HTTP/%s" %d', "203.0.113.77:50123", "GET", "/api/webchat/sessions/abc", "1.1", 200)
        logger.info('%s - "%s %s HTTP/%s" %d', "2001:db8::8a2e:370:7334", "GET", "/health", "1.1", 200)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == '[ip] - "GET /api/webchat/sessions/[secret] HTTP/1.1" 200'   # the session secret too
    assert "2001:db8" not in lines[1] and "[ip]" in lines[1]


def test_filter_redacts_records_for_handlers() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "call %s", ("07700 900999",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "call [phone]"


def test_the_app_installs_log_redaction(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    uninstall_log_redaction()
    create_app(settings, warm_knowledge=False)
    try:
        with caplog.at_level(logging.WARNING, logger="concierge.outbox"):
            logging.getLogger("concierge.outbox").warning(
                "whatsapp message 7 is dead after 5 attempts: %s",
                "The 'To' number whatsapp:+4915123456789 is not a valid phone number (Mrs Ingeborg Falkenrath)")
        message = caplog.records[-1].getMessage()
        assert "4915123456789" not in message and "Falkenrath" not in message
        assert "whatsapp message 7 is dead after 5 attempts" in message
    finally:
        uninstall_log_redaction()


def test_install_is_idempotent_and_reversible() -> None:
    uninstall_log_redaction()
    before = logging.getLogRecordFactory()
    install_log_redaction()
    install_log_redaction()
    uninstall_log_redaction()
    assert logging.getLogRecordFactory() is before


def test_uvicorn_access_log_lines_still_format_with_the_client_masked() -> None:
    import logging

    from uvicorn.logging import AccessFormatter

    from feedback.redact import install_log_redaction, uninstall_log_redaction

    install_log_redaction()
    try:
        record = logging.getLogger("uvicorn.access").makeRecord(
            "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
            ("203.0.113.7:51234", "GET", "/api/webchat/sessions/abc/messages?email=jo@example.com", "1.1", 200),
            None)
        line = AccessFormatter(fmt="%(client_addr)s %(request_line)s %(status_code)s", use_colors=False).format(record)
    finally:
        uninstall_log_redaction()
    assert "203.0.113.7" not in line and "jo@example.com" not in line
    assert "GET /api/webchat/sessions/[secret]/messages" in line and "200" in line


def test_secrets_in_urls_are_masked_in_log_lines() -> None:
    line = '[ip] - "GET /api/webchat/sessions/Zx9-secretValue_1/events?after=12 HTTP/1.1" 200'
    assert redact_log_text(line) == '[ip] - "GET /api/webchat/sessions/[secret]/events?after=12 HTTP/1.1" 200'
    assert redact_log_text("GET /status?token=abc123&x=1") == "GET /status?token=[secret]&x=1"
    assert redact_log_text("POST /rasa/webhook?Token=abc HTTP/1.1") == "POST /rasa/webhook?Token=[secret] HTTP/1.1"
    assert redact_log_text("GET /api/webchat/messages?after=3") == "GET /api/webchat/messages?after=3"


def test_a_number_run_too_long_for_one_phone_is_read_part_by_part() -> None:
    # a mobile followed by a reference in brackets, two landlines with a slash: one long run of digits
    assert redact("text me on +49 151 2345 6789 (30051177) after 5") == "text me on [phone] (30051177) after 5"
    assert redact("try 0131 496 0123 / 0131 496 0456") == "try [phone] / [phone]"
    assert redact("lot 1234567890123456789 expired") == "lot 1234567890123456789 expired"
