"""Query normalisation for how clinicians type: expand common short forms before retrieval.

Generic medical and chat abbreviations only (not tied to any library); the expansion is
spelled out in place, which is what the sentence embedder understands best.
"""

from __future__ import annotations

import re

ABBREVIATIONS: dict[str, str] = {
    "ci": "contraindications", "cis": "contraindications", "contra-indications": "contraindications",
    "moa": "mechanism of action", "mech": "mechanism",
    "ddi": "drug interactions", "ddis": "drug interactions", "dx": "diagnosis", "tx": "treatment",
    "sx": "symptoms", "pt": "patient", "pts": "patients", "hx": "history",
    "ae": "adverse events side effects", "aes": "adverse events side effects", "se": "side effects",
    "adr": "adverse drug reactions", "adrs": "adverse drug reactions",
    "lft": "liver function tests", "lfts": "liver function tests", "alt": "transaminases liver",
    "ast": "transaminases liver",
    "egfr": "renal impairment kidney function", "crcl": "creatinine clearance renal impairment",
    "ckd": "chronic kidney disease renal impairment", "esrd": "end-stage renal disease dialysis",
    "ocs": "oral corticosteroids", "ics": "inhaled corticosteroids", "pred": "prednisolone",
    "hypo": "hypoglycaemia", "hypos": "hypoglycaemia", "hypoglycemia": "hypoglycaemia",
    "su": "sulfonylurea", "sus": "sulfonylureas", "gi": "gastrointestinal",
    "n/v": "nausea vomiting", "nv": "nausea vomiting",
    "max": "maximum", "qd": "once daily", "od": "once daily", "q4w": "every 4 weeks",
    "qw": "once weekly", "sc": "subcutaneous", "sq": "subcutaneous", "po": "by mouth oral",
    "titrate": "dose escalation increase dose", "titration": "dose escalation increase dose",
    "uptitrate": "dose escalation increase dose",
    "ldl": "ldl-c cholesterol", "hba1c": "glycaemic control hba1c", "a1c": "hba1c glycaemic control",
    "ck": "creatine kinase", "rhabdo": "rhabdomyolysis", "mtc": "medullary thyroid carcinoma",
    "men2": "multiple endocrine neoplasia", "glp1": "glp-1 receptor agonist", "glp-1": "glp-1 receptor agonist",
    "t2d": "type 2 diabetes", "t2dm": "type 2 diabetes", "t1d": "type 1 diabetes",
    "preg": "pregnancy", "bf": "breast-feeding", "bfing": "breast-feeding", "breastfeeding": "breast-feeding",
    "peds": "paediatric children", "paeds": "paediatric children",
    "copay": "copay savings card cost", "co-pay": "copay savings card cost", "psp": "patient support programme",
    "pi": "prescribing information", "smpc": "summary of product characteristics",
    "pep": "post-exposure prophylaxis", "ppe": "personal protective equipment",
    "rx": "prescription", "vax": "vaccine", "vacc": "vaccine",
    "abx": "antibiotics", "iv": "intravenous", "im": "intramuscular", "bp": "blood pressure",
    "sxs": "symptoms",
    "eos": "eosinophils", "eosin": "eosinophils", "abdo": "abdominal", "abd": "abdominal",
    "hcp": "healthcare professionals", "hcps": "healthcare professionals",
    "hcw": "healthcare workers", "hcws": "healthcare workers", "pui": "person under investigation",
    "puis": "persons under investigation", "tab": "tablet", "tabs": "tablets", "inj": "injection",
    "yo": "year old", "yr": "year", "yrs": "years", "wk": "week", "wks": "weeks", "hrs": "hours",
    "ppl": "people", "dept": "department", "depts": "departments", "w/": "with", "w/o": "without",
    "sob": "shortness of breath", "icu": "intensive care", "gp": "general practitioner",
    "uri": "upper respiratory infection", "urti": "upper respiratory tract infection", }
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9/+\-]*\??")


def expand_query(text: str) -> str:
    """The query with each known short form spelled out in place ("cardiovex CI" → "cardiovex contraindications")."""

    def repl(m: re.Match[str]) -> str:
        tok = m.group(0)
        q = tok.endswith("?")
        full = ABBREVIATIONS.get(tok.lower().rstrip("?"))
        return (full + ("?" if q else "")) if full else tok

    return _TOKEN.sub(repl, text)
