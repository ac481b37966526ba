"""The content-library file format: parse and strictly validate, or load nothing.

A library is a directory of ``*.yaml`` files (one item per file, plus an optional
``products.yaml``) or one ``.jsonl`` file (one item per line). Every error names the
file and the line; an invalid library yields no items at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from api.errors import InvalidInput


class Kind(StrEnum):
    faq = "faq"
    srd = "srd"
    pi = "pi"
    service = "service"


class Audience(StrEnum):
    hcp = "hcp"
    patient = "patient"
    public = "public"


class Status(StrEnum):
    draft = "draft"
    approved = "approved"
    withdrawn = "withdrawn"


#: kinds that may only go to a verified healthcare professional
VERIFIED_ONLY_KINDS = frozenset({Kind.srd, Kind.pi})

REQUIRED_FIELDS = (
    "id", "version", "title", "product", "kind", "audience", "markets", "status",
    "approval_code", "approved_at", "expires_at", "questions", "body",
)
_MARKET = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class LibraryItem:
    id: str
    version: int
    title: str
    product: str
    kind: str
    audience: tuple[str, ...]
    markets: tuple[str, ...]
    status: str
    approval_code: str
    approved_at: date
    expires_at: date
    questions: tuple[str, ...]
    body: str
    source: str = ""  # file:line the item came from

    def content_hash(self) -> str:
        """Identity of what the item says and to whom; any change means a new version is due."""
        payload = json.dumps(
            [self.title, self.product, self.kind, list(self.audience), list(self.markets), self.status,
             self.approval_code, self.approved_at.isoformat(), self.expires_at.isoformat(),
             list(self.questions), self.body],
            ensure_ascii=True, separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class ProductInfo:
    key: str
    display_name: str
    safety_statement: str | None
    data: dict[str, Any]


@dataclass
class Library:
    items: list[LibraryItem]
    products: dict[str, ProductInfo] = field(default_factory=dict)
    path: Path | None = None

    def digest(self) -> str:
        """A hash of everything in the library (the index cache key)."""
        h = hashlib.sha256()
        for item in sorted(self.items, key=lambda i: (i.id, i.version)):
            h.update(f"{item.id}\x00{item.version}\x00{item.content_hash()}\n".encode())
        for key in sorted(self.products):
            h.update(json.dumps(self.products[key].data, sort_keys=True, default=str).encode())
        return h.hexdigest()


class LibraryInvalid(InvalidInput):
    """The library failed validation; ``errors`` lists every problem as ``file:line: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} error(s) in the content library", detail=errors)
        self.errors = errors


def _parse_date(value: object) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _str_list(value: object) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return list(value)


def validate_item(raw: object, where: str, field_lines: dict[str, int] | None = None) -> tuple[
        LibraryItem | None, list[str]]:
    """Check one raw item. ``where`` is ``file:line``; per-field lines sharpen the message when known."""
    if not isinstance(raw, dict):
        return None, [f"{where}: an item must be a mapping of fields"]
    lines = field_lines or {}
    base_file = where.rsplit(":", 1)[0]

    def at(name: str) -> str:
        return f"{base_file}:{lines[name]}" if name in lines else where

    errors: list[str] = []
    for name in REQUIRED_FIELDS:
        if name not in raw:
            errors.append(f"{where}: missing field '{name}'")
    if errors:
        return None, errors

    for name in ("id", "title", "product", "approval_code", "body"):
        if not isinstance(raw[name], str) or not raw[name].strip():
            errors.append(f"{at(name)}: field '{name}' must be a non-empty string")
    if isinstance(raw["version"], bool) or not isinstance(raw["version"], int) or raw["version"] < 1:
        errors.append(f"{at('version')}: field 'version' must be a positive integer")
    if raw["kind"] not in {k.value for k in Kind}:
        errors.append(f"{at('kind')}: unknown kind {raw['kind']!r} (expected one of faq, srd, pi, service)")
    if raw["status"] not in {s.value for s in Status}:
        errors.append(
            f"{at('status')}: unknown status {raw['status']!r} (expected draft, approved or withdrawn)")
    audience = _str_list(raw["audience"])
    if audience is None or not audience:
        errors.append(f"{at('audience')}: field 'audience' must be a non-empty list of strings")
    else:
        for a in audience:
            if a not in {x.value for x in Audience}:
                errors.append(f"{at('audience')}: unknown audience {a!r} (expected hcp, patient or public)")
    markets = _str_list(raw["markets"])
    if markets is None or not markets:
        errors.append(f"{at('markets')}: field 'markets' must be a non-empty list of strings")
    else:
        for m in markets:
            if not _MARKET.match(m):
                errors.append(f"{at('markets')}: market {m!r} is not an ISO 3166 alpha-2 code")
    questions = _str_list(raw["questions"])
    if questions is None:
        errors.append(f"{at('questions')}: field 'questions' must be a list of strings (may be empty)")
    approved_at = _parse_date(raw["approved_at"])
    expires_at = _parse_date(raw["expires_at"])
    if approved_at is None:
        errors.append(f"{at('approved_at')}: field 'approved_at' must be an ISO date (YYYY-MM-DD)")
    if expires_at is None:
        errors.append(f"{at('expires_at')}: field 'expires_at' must be an ISO date (YYYY-MM-DD)")
    if approved_at and expires_at and expires_at < approved_at:
        errors.append(f"{at('expires_at')}: expires_at {expires_at} is before approved_at {approved_at}")
    if errors:
        return None, errors
    assert audience is not None and markets is not None and questions is not None
    assert approved_at is not None and expires_at is not None
    return LibraryItem(
        id=raw["id"].strip(), version=raw["version"], title=raw["title"], product=raw["product"],
        kind=raw["kind"], audience=tuple(audience), markets=tuple(markets), status=raw["status"],
        approval_code=raw["approval_code"], approved_at=approved_at, expires_at=expires_at,
        questions=tuple(q for q in questions if q.strip()), body=raw["body"], source=where,
    ), []


# Budgets that keep a hostile file (a "billion laughs" of aliases, or nesting thousands deep) from
# taking the api's memory or stack: a real item is a few dozen nodes, a products file a few thousand.
MAX_YAML_ALIASES = 50
MAX_YAML_NODES = 200_000
MAX_NESTING = 64


class _TooComplex(ValueError):
    """The document is over a budget; the message says which and where (1-based line)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _check_yaml_budget(root: yaml.Node) -> None:
    """Refuse aliases past a budget, deep nesting, or an expansion past ``MAX_YAML_NODES``.

    Walks the composed graph once (aliases in PyYAML's graph are shared node objects, so the
    expanded size is computed with a memo instead of by expanding it)."""
    aliases = 0
    expanded: dict[int, int] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            total = 1 + sum(expanded[id(c)] for c in _children(node))
            expanded[key] = total
            if total > MAX_YAML_NODES:
                raise _TooComplex(f"expands to more than {MAX_YAML_NODES} values", node.start_mark.line + 1)
            continue
        if key in seen:
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise _TooComplex(f"uses more than {MAX_YAML_ALIASES} aliases (*refs)", node.start_mark.line + 1)
            if key not in expanded:  # a reference to a node still open above it: a cycle
                raise _TooComplex("an alias refers to the node that contains it", node.start_mark.line + 1)
            continue
        if depth > MAX_NESTING:
            raise _TooComplex(f"nested more than {MAX_NESTING} levels deep", node.start_mark.line + 1)
        seen.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _compose_bounded(text: str) -> yaml.Node | None:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise _TooComplex(f"nested more than {MAX_NESTING} levels deep", 1) from None
    if node is not None:
        _check_yaml_budget(node)
    return node


def _json_loads_bounded(text: str) -> object:
    """``json.loads`` that answers a nesting bomb with a clear error instead of RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _TooComplex("is nested too deep", 1) from None


def _yaml_mapping_with_lines(text: str) -> tuple[object, int, dict[str, int]]:
    """Parse YAML keeping the line of the mapping and of each top-level key (1-based).

    Bounded: raises :class:`_TooComplex` past the alias, size or nesting budget."""
    node = _compose_bounded(text)
    data = yaml.safe_load(text) if node is not None else None
    if node is None:
        return data, 1, {}
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                lines[str(key_node.value)] = key_node.start_mark.line + 1
    return data, node.start_mark.line + 1, lines


def _parse_products(path: Path, errors: list[str]) -> dict[str, ProductInfo]:
    try:
        data, line, _ = _yaml_mapping_with_lines(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        errors.append(f"{path}:{(mark.line + 1) if mark else 1}: invalid YAML: {exc}")
        return {}
    except _TooComplex as exc:
        errors.append(f"{path}:{exc.line}: refused: the YAML {exc}")
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("products"), dict):
        errors.append(f"{path}:{line}: products.yaml must have a top-level 'products' mapping")
        return {}
    products: dict[str, ProductInfo] = {}
    for key, spec in data["products"].items():
        if not isinstance(spec, dict):
            errors.append(f"{path}:{line}: product {key!r} must be a mapping")
            continue
        statement = spec.get("safety_statement")
        if statement is not None and not isinstance(statement, str):
            errors.append(f"{path}:{line}: product {key!r}: safety_statement must be a string")
            continue
        indications = spec.get("indications", {})
        if not isinstance(indications, dict):
            errors.append(f"{path}:{line}: product {key!r}: indications must map market -> list")
            continue
        products[str(key)] = ProductInfo(
            key=str(key), display_name=str(spec.get("display_name", key)),
            safety_statement=statement or None,
            data=json.loads(json.dumps(spec, default=str)),
        )
    return products


def parse_library(path: Path) -> Library:
    """Read and validate a library; raise :class:`LibraryInvalid` listing every error."""
    errors: list[str] = []
    items: list[LibraryItem] = []
    products: dict[str, ProductInfo] = {}
    if path.is_dir():
        files = sorted(p for p in path.glob("*.yaml") if p.name != "products.yaml")
        if (path / "products.yaml").exists():
            products = _parse_products(path / "products.yaml", errors)
        if not files:
            errors.append(f"{path}: no *.yaml item files found")
        for file in files:
            try:
                raw, line, lines = _yaml_mapping_with_lines(file.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                errors.append(f"{file}:{(mark.line + 1) if mark else 1}: invalid YAML: {exc}")
                continue
            except _TooComplex as exc:
                errors.append(f"{file}:{exc.line}: refused: the YAML {exc}")
                continue
            item, errs = validate_item(raw, f"{file}:{line}", lines)
            errors.extend(errs)
            if item:
                items.append(item)
    elif path.is_file() and path.suffix == ".jsonl":
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                raw = _json_loads_bounded(text)
            except json.JSONDecodeError as exc:
                errors.append(f"{path}:{n}: invalid JSON: {exc.msg}")
                continue
            except _TooComplex as exc:
                errors.append(f"{path}:{n}: refused: the JSON {exc}")
                continue
            item, errs = validate_item(raw, f"{path}:{n}")
            errors.extend(errs)
            if item:
                items.append(item)
    else:
        raise LibraryInvalid([f"{path}: not a directory of *.yaml files or a .jsonl file"])

    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            errors.append(f"{item.source}: duplicate id {item.id!r} (first at {seen[item.id]})")
        else:
            seen[item.id] = item.source
    if errors:
        raise LibraryInvalid(errors)
    return Library(items=items, products=products, path=path)
