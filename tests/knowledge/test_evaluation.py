"""covid_faq body matching and its fixed TUNE / REPORT halves (``knowledge.evaluation``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from knowledge.evaluation import CovidHalf, covid_body, covid_half
from tests.knowledge.conftest import COVID_LIBRARY

pytestmark = pytest.mark.skipif(not COVID_LIBRARY.exists(), reason="../shared/eval/covid_faq not present")
HALVES: tuple[CovidHalf, ...] = ("tune", "report")


def _halves(path: Path) -> dict[str, dict[str, frozenset[str]]]:
    """half → {question text → acceptable item ids}."""
    return {h: {q.text: q.expected for q in covid_body(path, h)[1]} for h in HALVES}


def test_covid_halves_are_disjoint_and_cover_every_question() -> None:
    library, everything = covid_body(COVID_LIBRARY)
    halves = _halves(COVID_LIBRARY)
    tune, report = halves["tune"], halves["report"]
    assert not set(tune) & set(report)                                        # no question in both
    tune_items = {i for ids in tune.values() for i in ids}
    report_items = {i for ids in report.values() for i in ids}
    assert not tune_items & report_items                                      # no item in both
    assert {q.text: q.expected for q in everything} == tune | report          # together: the whole set
    assert (len(tune), len(report), len(library.items)) == (112, 97, 213)
    # body matching: every half is asked of all the bodies, with no title or curated question left
    for h in HALVES:
        lib, _ = covid_body(COVID_LIBRARY, h)
        assert len(lib.items) == 213 and all(i.title == "" and not i.questions and i.body for i in lib.items)


def test_covid_halves_are_fixed_and_do_not_depend_on_file_order(tmp_path: Path) -> None:
    halves = _halves(COVID_LIBRARY)
    # Pinned: changing the split would silently move REPORT questions into tuning.
    report_ids = sorted(min(ids) for ids in halves["report"].values())
    assert hashlib.sha256(" ".join(report_ids).encode()).hexdigest()[:16] == "1c2c04adc58556b9"
    assert [covid_half({i}) for i in ("COVIDQA-0001", "COVIDQA-0002", "COVIDQA-0005", "COVIDQA-0006")] \
        == ["report", "tune", "tune", "report"]
    # A question shared by two items (duplicate FAQ entries) goes by its smallest id, in any order.
    assert covid_half(["COVIDQA-0023", "COVIDQA-0003"]) == covid_half(["COVIDQA-0003", "COVIDQA-0023"]) \
        == covid_half(["COVIDQA-0003"])
    shuffled = tmp_path / "library.jsonl"
    lines = [line for line in COVID_LIBRARY.read_text(encoding="utf-8").splitlines() if line.strip()]
    shuffled.write_text("\n".join(lines[1::2] + lines[::-2]) + "\n", encoding="utf-8")
    assert _halves(shuffled) == halves
