"""Approved indications per product (``knowledge/content/products.yaml``) and the off-label check.

Schema (owned by the knowledge package)::

    products:
      cardiovex:
        display_name: Cardiovex
        generic_name: velostatin
        aliases: [cardiovex, velostatin]
        approved_populations: [adults]
        indications: {US: [...], GB: [...], DE: [...]}
        max_daily_dose_mg: 40        # optional

The screen only sees text, so a use is on-label when any market approves it; the medical
inquiry keeps the conversation (and therefore the market) for the reviewer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ADULT_AGE = 18


@dataclass(frozen=True)
class Product:
    key: str
    names: tuple[str, ...]
    min_age: int
    pregnancy_approved: bool
    indications: tuple[str, ...]
    max_daily_dose_mg: float | None = None
    max_weekly_dose_mg: float | None = None
    max_dose_mg_per_4_weeks: float | None = None
    display_name: str = ""        # as written in products.yaml ("Cardiovex"); the key capitalised if absent
    generic_name: str = ""
    # (market, its indications): a use approved in one market can be off-label in another
    indications_by_market: tuple[tuple[str, tuple[str, ...]], ...] = ()
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def indications_in(self, market: str | None) -> tuple[str, ...]:
        """The indications approved in ``market``; every market's when it is None or unknown."""
        for code, values in self.indications_by_market:
            if market is not None and code == market.upper():
                return values
        return self.indications

    def __post_init__(self) -> None:
        alt = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
        object.__setattr__(self, "pattern", re.compile(rf"\b({alt})\b"))


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal string alignment distance (a transposition counts 1), cut off above ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def within_edits(a: str, b: str, limit: int) -> bool:
    """Optimal-string-alignment distance of ``a`` and ``b`` is at most ``limit`` (typos: a letter
    dropped, doubled, swapped with its neighbour or mistyped)."""
    return edit_distance(a, b, limit) <= limit


def typo_budget(name: str) -> int:
    """Edits a misspelt product name may carry and still be recognised (none for short names)."""
    return 0 if len(name) < 6 else 1 if len(name) < 9 else 2


_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Catalogue:
    products: tuple[Product, ...] = ()

    def mentioned(self, norm: str) -> tuple[Product, ...]:
        """Products named in the text, also when misspelt ("glucorell", "respisan", "cardiovx")."""
        found = {p.key for p in self.products if p.pattern.search(norm)}
        if len(found) < len(self.products):
            for word in set(_WORD.findall(norm)):
                if len(word) < 5:
                    continue
                for name, budget, key in _fuzzy_names(self.products):
                    if key not in found and word[0] == name[0] and abs(len(word) - len(name)) <= budget \
                            and _near(word, name, budget):
                        found.add(key)
        return tuple(p for p in self.products if p.key in found)


@lru_cache(maxsize=64)
def _fuzzy_names(products: tuple[Product, ...]) -> tuple[tuple[str, int, str], ...]:
    return tuple((name, typo_budget(name), p.key) for p in products for name in p.names if typo_budget(name))


@lru_cache(maxsize=8192)
def _near(word: str, name: str, budget: int) -> bool:
    return word != name and within_edits(word, name, budget)


def _min_age(populations: list[str]) -> int:
    ages: list[int] = []
    for pop in populations:
        text = str(pop).lower()
        numbers = [int(n) for n in re.findall(r"\d{1,2}", text)]
        if numbers:
            ages.append(min(numbers))
        elif any(w in text for w in ("child", "paediatric", "pediatric", "infant", "all ages")):
            ages.append(0)
        elif "adolescent" in text or "teen" in text:
            ages.append(12)
        elif "adult" in text or "elderly" in text:
            ages.append(ADULT_AGE)
    return min(ages) if ages else ADULT_AGE


def parse_catalogue(data: Mapping[str, Any]) -> Catalogue:
    products: list[Product] = []
    for key, spec in (data.get("products") or {}).items():
        spec = spec or {}
        names = {str(key).lower()}
        for name_key in ("display_name", "generic_name"):
            if spec.get(name_key):
                names.add(str(spec[name_key]).lower())
        names.update(str(a).lower() for a in spec.get("aliases") or [])
        populations = [str(p) for p in spec.get("approved_populations") or []]
        indications: list[str] = []
        by_market: list[tuple[str, tuple[str, ...]]] = []
        raw_ind = spec.get("indications") or {}
        if isinstance(raw_ind, Mapping):
            for market, values in raw_ind.items():
                indications.extend(str(v).lower() for v in values or [])
                by_market.append((str(market).upper(), tuple(str(v).lower() for v in values or [])))
        else:
            indications.extend(str(v).lower() for v in raw_ind)
        def _mg(name: str, spec: Mapping[str, Any] = spec) -> float | None:
            value = spec.get(name)
            return float(value) if value is not None else None

        products.append(Product(
            key=str(key),
            names=tuple(sorted(n for n in names if n)),
            min_age=_min_age(populations),
            pregnancy_approved=any("pregnan" in p.lower() for p in populations),
            indications=tuple(indications),
            max_daily_dose_mg=_mg("max_daily_dose_mg"),
            max_weekly_dose_mg=_mg("max_weekly_dose_mg"),
            max_dose_mg_per_4_weeks=_mg("max_dose_mg_per_4_weeks"),
            display_name=str(spec.get("display_name") or str(key).capitalize()),
            generic_name=str(spec.get("generic_name") or ""),
            indications_by_market=tuple(by_market),
        ))
    return Catalogue(tuple(products))


def load_catalogue(path: Path | None) -> Catalogue:
    """The products file, or an empty catalogue when it does not exist (yet)."""
    if path is None or not path.is_file():
        return Catalogue()
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return parse_catalogue(data)


# ---------------------------------------------------------------- off-label signals

_CHILD_WORDS = re.compile(
    r"\b(child|children|kids?|paediatric|pediatric|paeds|peds|infants?|babies|baby|toddlers?|neonates?"
    r"|newborns?|school[- ]age|primary school)\b"
)
_TEEN_WORDS = re.compile(r"\b(adolescents?|teens?|teenagers?|teenaged|minors?|juvenile)\b")
_AGE_NUMBER = re.compile(
    r"\b(\d{1,2})\s*(?:-| )?(?:yo|y/o|y\.o\.|year[- ]olds?|yr[- ]olds?|years old|yrs old|years of age)\b"
    r"|\baged? (\d{1,2})\b|\b(?:under|below|younger than) (\d{1,2})s?\b|\b(\d{1,2})\s?[mf]\b"
    r"|\b(\d{1,2})[- ]month[- ]old\b"
)
_PREGNANT_USE = re.compile(r"\bpregnan(t|cy)\b|\bbreast[- ]?feed|\blactat")

# Conditions an HCP might name as a (mis)use; matched only right after a treatment cue.
_CONDITIONS = (
    "type 1 diabetes", "type 2 diabetes", "type 1 diabetic", "type 2 diabetic", "t1dm", "t2dm", "diabetes",
    "prediabetes", "obesity",
    "weight loss", "weight management", "pcos", "polycystic ovary", "fatty liver", "nash", "nafld",
    "heart failure", "hypertension", "high blood pressure", "atrial fibrillation", "angina",
    "hypercholesterolaemia", "hypercholesterolemia", "high cholesterol", "dyslipidaemia", "dyslipidemia",
    "hypertriglyceridaemia", "hypertriglyceridemia", "familial hypercholesterolaemia", "stroke prevention",
    "asthma", "mild asthma", "moderate asthma", "copd", "emphysema", "bronchitis", "chronic cough",
    "allergic rhinitis", "hay fever", "nasal polyps", "eczema", "atopic dermatitis", "urticaria", "psoriasis",
    "eosinophilic oesophagitis", "eosinophilic esophagitis", "acne", "alopecia", "migraine", "depression",
    "anxiety", "alzheimer", "dementia", "parkinson", "multiple sclerosis", "cancer", "covid", "long covid",
    "kidney disease", "ckd", "gout", "arthritis", "rheumatoid arthritis", "osteoporosis", "sleep apnoea",
    "sleep apnea", "infertility", "addiction", "alcohol use disorder", "smoking cessation", "anti-ageing",
    "anti-aging", "bodybuilding", "athletic performance", "sepsis", "pregnancy", "gestational diabetes",
    "heart attack", "heart attacks", "myocardial infarction", "cardiovascular prevention",
    "cardiovascular events", "cv prevention", "cv events",
    # respiratory, allergic and eosinophilic conditions other than severe eosinophilic asthma
    "acute bronchospasm", "bronchospasm", "status asthmaticus", "acute asthma", "asthma attack", "acute exacerbation",
    "egpa", "churg-strauss", "hypereosinophilic syndrome", "chronic rhinosinusitis", "rhinosinusitis", "sinusitis",
    "bronchiectasis", "cystic fibrosis", "pulmonary fibrosis", "ipf", "sarcoidosis", "pulmonary hypertension",
    "food allergy", "peanut allergy", "chronic urticaria", "bullous pemphigoid", "eosinophilic gastritis",
    # cardiovascular, metabolic, neurological and other conditions none of the products is for
    "liver disease", "active liver disease", "cirrhosis", "essential tremor", "tremor", "performance anxiety",
    "thyrotoxicosis", "hyperthyroidism", "svt", "tachycardia", "arrhythmia", "insulin resistance", "lada", "mody",
    "type 1", "neuropathy", "cognitive decline", "lupus", "sle", "crohn's disease", "crohn's", "crohns",
    "ulcerative colitis", "ibd", "steatohepatitis", "mash", "binge eating", "polyneuropathy", "aortic stenosis",
)
_CONDITION_RX = re.compile(
    r"\b(" + "|".join(re.escape(c) for c in sorted(_CONDITIONS, key=len, reverse=True)) + r")s?\b"
)
_TREATMENT_CUE = re.compile(
    r"\b(for|to treat|treating|treat|treatment of|in the treatment of|indicated (for|in)|approved (for|in)"
    r"|use(d)? (it |this |\w+ )?(for|in)|using (it |\w+ )?(for|in)|prescrib\w* (it |\w+ )?(for|in)|give (it )?"
    r"(for|in)|help (with)?|works? (for|in)|effective (for|in)|efficacy (for|in)|data (for|in|on)|evidence (for|in)"
    r"|manage|managing|in patients with|in people with|(patient|pt|man|woman|lady|someone|person|girl|boy|adult"
    r"|child|teen|teenager) (with|who has)|as( an?)?|as (an? )?(adjunct|add-on|treatment|therapy) (for|in|to)|\()"
    r"\s+(?:[a-z'/-]+\s+){0,3}$"
)
_DOSE = re.compile(r"\b(\d+(?:\.\d+)?)\s*(mg|milligrams?)\b")
_FREQUENCY = (
    (re.compile(r"\b(four times (a|per) day|four times daily|qid|q\.i\.d|4 ?(x|times) (a |per )?(day|daily))\b"), 4.0),
    (re.compile(r"\b(three times (a|per) day|three times daily|tid|t\.i\.d|tds|3 ?(x|times) (a |per )?(day|daily))\b"),
     3.0),
    (re.compile(r"\b(twice (a|per) day|twice daily|bid|b\.i\.d|bd|2 ?(x|times) (a |per )?(day|daily)|every 12 hours"
                r"|morning and (evening|night))\b"), 2.0),
)
_STOPWORDS = frozenset({"the", "of", "and", "in", "with", "a", "an", "to", "for", "primary", "adults"})


# Lay names → the words an indication uses.
_LAY_NAMES = {
    "high cholesterol": "hypercholesterolaemia",
    "high blood pressure": "hypertension",
    "t2dm": "type 2 diabetes",
    "t1dm": "type 1 diabetes",
    "type 1 diabetic": "type 1 diabetes",
    "type 2 diabetic": "type 2 diabetes",
    "hypercholesterolemia": "hypercholesterolaemia",
    "dyslipidemia": "dyslipidaemia",
    "hypertriglyceridemia": "hypertriglyceridaemia",
    "heart attack": "cardiovascular events",
    "heart attacks": "cardiovascular events",
    "myocardial infarction": "cardiovascular events",
    "cardiovascular prevention": "cardiovascular events",
    "cv prevention": "cardiovascular events",
    "cv events": "cardiovascular events",
    "hyperlipidaemia": "dyslipidaemia",
    "hyperlipidemia": "dyslipidaemia",
}

# A condition named by its shape after a treatment cue ("for bronchospasm", "for thyrotoxicosis"), when
# it is not in the list above: the common endings of disease names.
_CONDITION_SHAPE = re.compile(
    r"\b([a-z]+(itis|osis|aemia|emia|pathy|algia|plegia|spasm|asthmaticus|trophy|penia|cytosis))\b"
)
# The condition in front of the patient ("a COPD pt", "my MS patient"); "ms" only in this position.
_CONDITION_PATIENT = re.compile(
    r"(^|\b(?:a|an|my|our|the|this|his|her) )(ms|copd|t1dm|type 1|egpa|ipf|ckd|pcos|nash|nafld|af|heart failure"
    r"|dialysis|cf|crohn'?s|lupus|ibd|dementia|parkinson'?s) (pt|patient|man|woman|lady|child|boy|girl|teenager"
    r"|teen|adolescent|kid)s?\b"
)
# The condition as the person ("one of our type 1 diabetics", "a T1 diabetic"): that person has it.
_CONDITION_PERSON = re.compile(r"\b(a|an|my|our|the|this|one of (?:my|our)) (type 1|type i|t1d?m?) diabetics?\b")
_CONDITION_PATIENT_NAMES = {"ms": "multiple sclerosis", "cf": "cystic fibrosis", "af": "atrial fibrillation",
                            "dialysis": "kidney disease", "crohns": "crohn's", "parkinsons": "parkinson"}
# The indication said to be absent ("no asthma", "not diabetic", "without diabetes").
_ABSENT = re.compile(
    r"\b(no|without|not|non)[- ](asthma|asthmatic|diabetes|diabetic|t2dm|high cholesterol|hypercholesterol\w*"
    r"|dyslipid\w*)\b(?! (attacks?|exacerbations?|symptoms|flares?|control|medication|meds|history))"
)


def _covered(condition: str, product: Product, market: str | None = None) -> bool:
    condition = _LAY_NAMES.get(condition, condition)
    tokens = [t for t in re.findall(r"[a-z0-9]+", condition) if t not in _STOPWORDS]
    if not tokens:
        return True
    # "high cholesterol" is the lay name of hypercholesterolaemia, and so on.
    synonyms = {
        "cholesterol": ("cholesterol", "hypercholesterol", "lipid"),
        "hypercholesterolaemia": ("hypercholesterolaemia", "hypercholesterolemia"),
        "dyslipidaemia": ("dyslipidaemia", "dyslipidemia"),
    }
    for indication in product.indications_in(market):
        if all(
            any(s in indication for s in synonyms.get(tok, (tok,))) or tok in indication
            for tok in tokens
        ):
            # "type 1 diabetes" must not ride on "type 2 diabetes"
            digits = re.findall(r"\b\d\b", condition)
            if digits and not all(d in re.findall(r"\b\d\b", indication) for d in digits):
                continue
            return True
    return False


def _ages(norm: str) -> list[int]:
    ages: list[int] = []
    for m in _AGE_NUMBER.finditer(norm):
        if m.group(5):  # months old
            ages.append(0)
            continue
        for g in m.groups()[:4]:
            if g:
                ages.append(int(g))
                break
    return ages


_TWICE_WEEKLY = re.compile(r"\b(twice (a|per|every) week|twice weekly|2x (a |per )?week)\b")
# Doses per 4 weeks when given more often than every 4 weeks.
_PER_4_WEEKS = (
    (re.compile(r"\b(every|each|once a|once per|per|a) week\b|\bweekly\b|\bq1?w\b"), 4.0),
    (re.compile(r"\bevery (2|two|other) weeks?\b|\bfortnightly\b|\bevery fortnight\b|\bq2w\b"), 2.0),
    (re.compile(r"\bevery (3|three) weeks\b|\bq3w\b"), 4.0 / 3.0),
)


def _above_max_dose(norm: str, product: Product) -> bool:
    """A stated mg amount above the label's daily / weekly / 4-weekly maximum."""
    amounts = [float(m.group(1)) for m in _DOSE.finditer(norm)]
    if not amounts:
        return False
    daily_multiplier = 1.0
    for rx, mult in _FREQUENCY:
        if rx.search(norm):
            daily_multiplier = mult
            break
    weekly_multiplier = 2.0 if _TWICE_WEEKLY.search(norm) else 1.0
    four_weekly_multiplier = next((mult for rx, mult in _PER_4_WEEKS if rx.search(norm)), 1.0)
    for amount in amounts:
        if product.max_daily_dose_mg is not None and amount * daily_multiplier > product.max_daily_dose_mg:
            return True
        if product.max_weekly_dose_mg is not None and amount * weekly_multiplier > product.max_weekly_dose_mg:
            return True
        if product.max_dose_mg_per_4_weeks is not None and \
                amount * four_weekly_multiplier > product.max_dose_mg_per_4_weeks:
            return True
    return False


def _indication_absent(norm: str, product: Product) -> bool:
    """The message says the patient does not have what the product is for ("respizan ... no asthma")."""
    for m in _ABSENT.finditer(norm):
        word = m.group(2)
        stem = "diabet" if word.startswith(("diabet", "t2dm")) else "asthma" if word.startswith("asthma") else (
            "cholesterol" if "cholesterol" in word else "dyslipid" if word.startswith("dyslipid") else word)
        synonyms = {"cholesterol": ("cholesterol", "hypercholesterol"), "dyslipid": ("dyslipid",)}
        if any(s in ind for ind in product.indications for s in synonyms.get(stem, (stem,))):
            return True
    return False


# A condition the patient *has* ("my dialysis patient", "in patients with CKD", "a type 1 diabetic") is
# the product's off-label indication only when the product could be used for it — a condition of the
# product's own therapeutic area (a COPD patient on Respizan, a type 1 diabetic on Glucorel). Otherwise it
# is a comorbidity of an on-label use (a statin for the cholesterol of a patient on dialysis), asked about
# every day, and must not be sent to Medical as off-label. Areas: the words of a product's indications.
_AREAS: dict[str, tuple[str, ...]] = {
    "asthma": ("asthma", "copd", "bronch", "egpa", "churg", "pulmonary", "ipf", "nasal polyp", "rhinosinusitis",
               "eosinophil", "urticaria", "atopic", "eczema", "cough", "allerg", "oesophagitis", "esophagitis"),
    "diabetes": ("diabet", "t1dm", "t2dm", "type 1", "type i", "type 2", "obes", "weight", "pcos", "nash", "nafld",
                 "insulin", "glyc", "metabolic"),
    "cholesterol": ("cholesterol", "lipid", "triglycerid", "familial", "cardiovascular", "atheroscler", "coronary",
                    "arterial", "hyperlip"),
}
_POPULATION_CUE = re.compile(
    r"\b(in patients with|in people with|(patient|pt|man|woman|lady|someone|person|girl|boy|adult|child|teen"
    r"|teenager)s? (with|who has|who have))\s+(?:[a-z'/-]+\s+){0,3}$"
)
_PERSON_AFTER = re.compile(r"^s?\s*(pt|pts|patient|patients|man|woman|lady|child|boy|girl|teen|teenager|people"
                           r"|adults?|diabetics?|population)\b")


def _in_area(condition: str, product: Product) -> bool:
    """Whether ``condition`` belongs to the therapeutic area of ``product`` (so a use for it is plausible)."""
    text = " ".join(product.indications).lower()
    return any(key in text and any(t in condition for t in terms) for key, terms in _AREAS.items())


def off_label_reasons(norm: str, products: tuple[Product, ...], market: str | None = None) -> tuple[str, ...]:
    """Why a message about ``products`` looks like a use outside the approved label (in ``market``
    when given; otherwise a use is on-label when any market approves it)."""
    reasons: list[str] = []
    for product in products:
        if "population" not in reasons:
            ages = _ages(norm)
            if (
                any(age < product.min_age for age in ages)
                or (_CHILD_WORDS.search(norm) and product.min_age > 11)
                or (_TEEN_WORDS.search(norm) and product.min_age > 12)
                or (_PREGNANT_USE.search(norm) and not product.pregnancy_approved)
            ):
                reasons.append("population")
        if "indication" not in reasons and _indication_absent(norm, product):
            reasons.append("indication")
        if "indication" not in reasons:
            for m in _CONDITION_PATIENT.finditer(norm):
                condition = _CONDITION_PATIENT_NAMES.get(m.group(2).replace("'", ""), m.group(2))
                if not _covered(condition, product, market) and _in_area(condition, product):
                    reasons.append("indication")
                    break
        if "indication" not in reasons and _CONDITION_PERSON.search(norm) \
                and not _covered("type 1 diabetes", product, market) and _in_area("type 1 diabetes", product):
            reasons.append("indication")
        if "indication" not in reasons:
            for m in _CONDITION_SHAPE.finditer(norm):
                before = norm[max(0, m.start() - 40):m.start()]
                if _TREATMENT_CUE.search(before.rstrip() + " ") and not _covered(m.group(1), product, market) \
                        and not _comorbidity(m, before, m.group(1), product):
                    reasons.append("indication")
                    break
        if "indication" not in reasons:
            for m in _CONDITION_RX.finditer(norm):
                before = norm[max(0, m.start() - 40):m.start()]
                if _TREATMENT_CUE.search(before.rstrip() + " "):
                    condition = m.group(1)
                    if condition in ("pregnancy",):
                        continue
                    if not _covered(condition, product, market) and not _comorbidity(m, before, condition, product):
                        reasons.append("indication")
                        break
        if "dose" not in reasons and _above_max_dose(norm, product):
            reasons.append("dose")
    return tuple(reasons)


def _comorbidity(m: re.Match[str], before: str, condition: str, product: Product) -> bool:
    """The condition describes the patient ("patients with CKD", "my dialysis patient"), outside the
    product's area: a comorbidity, not the use."""
    population = bool(_POPULATION_CUE.search(before.rstrip() + " ")) or bool(
        _PERSON_AFTER.search(m.string[m.end():]))
    return population and not _in_area(condition, product)


def products_path_default() -> Path:
    from api.settings import REPO_ROOT

    return REPO_ROOT / "knowledge" / "content" / "products.yaml"
