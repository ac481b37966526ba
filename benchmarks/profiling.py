"""CPU profiling helpers for the turn benchmarks: a CPU-weighted stack sampler, SQL write counting, a
component breakdown of the samples, and a small collapsed-stack → SVG flame graph renderer.

The sampler runs as a thread inside the profiled process. Every ``interval`` seconds it reads each
thread's CPU clock (``time.pthread_getcpuclockid``) and charges the CPU time the thread used since the
last sample to the thread's current Python stack (``sys._current_frames``): waiting (for Rasa, the
database, a lock) costs nothing, as in a CPU profile. The samples are as good as their timing: a sample
is taken when the sampler gets the GIL, so CPU is attributed at a GIL hand-off (at most every switch
interval, made short while sampling, or at a blocking call) — fine for components of a few ms, not
for single lines. ``psutil``/``py-spy`` are not installed here; this needs neither.
"""

from __future__ import annotations

import html
import json
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int, *, children: bool = False) -> float:
    """user + system CPU seconds of ``pid`` from /proc (with its live children's when asked)."""
    def one(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)

    total = one(pid)
    if children:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        total += sum(process_cpu_s(int(k), children=True) for k in kids)
    return total


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---------------------------------------------------------------- the sampler

def _frame_label(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = "stdlib/" + path.split("/", 1)[1]
            break
    else:
        root = str(Path(__file__).resolve().parent.parent) + "/"
        path = path.removeprefix(root)
    return f"{path}:{code.co_qualname}"


class CpuSampler:
    """Samples every thread's stack, weighted by the CPU it used since the previous sample."""

    def __init__(self, interval: float = 0.002, switch_interval: float = 0.0005) -> None:
        self.interval = interval
        self.switch_interval = switch_interval
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self._last: dict[int, float] = {}
        self._clocks: dict[int, int] = {}
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None
        self.own_cpu_s = 0.0
        self._old_switch = sys.getswitchinterval()

    def start(self) -> None:
        self._running = True
        sys.setswitchinterval(self.switch_interval)
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join()
        sys.setswitchinterval(self._old_switch)

    def reset(self) -> None:
        with self._lock:
            self.stacks.clear()
            self.own_cpu_s = 0.0

    def snapshot(self) -> tuple[Counter[tuple[str, ...]], float]:
        with self._lock:
            return Counter(self.stacks), self.own_cpu_s

    def _cpu(self, ident: int) -> float | None:
        clock = self._clocks.get(ident)
        try:
            if clock is None:
                clock = self._clocks[ident] = time.pthread_getcpuclockid(ident)
            return time.clock_gettime(clock)
        except OSError:  # the thread ended
            self._clocks.pop(ident, None)
            return None

    def _run(self) -> None:
        me = threading.get_ident()
        while self._running:
            time.sleep(self.interval)
            started = time.thread_time()
            frames = sys._current_frames()
            with self._lock:
                for ident, frame in frames.items():
                    if ident == me:
                        continue
                    cpu = self._cpu(ident)
                    if cpu is None:
                        continue
                    delta = cpu - self._last.get(ident, cpu)
                    self._last[ident] = cpu
                    if delta <= 0:
                        continue
                    stack: list[str] = []
                    f: FrameType | None = frame
                    while f is not None:
                        stack.append(_frame_label(f))
                        f = f.f_back
                    self.stacks[tuple(reversed(stack))] += delta
                self.own_cpu_s += time.thread_time() - started


def write_collapsed(stacks: Counter[tuple[str, ...]], path: Path) -> None:
    """Brendan Gregg's collapsed format: ``frame;frame;frame <microseconds of CPU>``."""
    with path.open("w") as f:
        for stack, cpu in stacks.most_common():
            us = round(cpu * 1e6)
            if us > 0:
                f.write(";".join(s.replace(";", ",") for s in stack) + f" {us}\n")


def read_collapsed(path: Path) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        frames, _, value = line.rpartition(" ")
        out[tuple(frames.split(";"))] += int(value) / 1e6
    return out


# ---------------------------------------------------------------- SQL statement counting

@dataclass
class StatementCounter:
    """Counts the SQL statements every engine of this process sends (SQLAlchemy event hooks)."""

    kinds: Counter[str] = field(default_factory=Counter)
    tables: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)  # the first 160 characters of each
    rows_written: int = 0
    # How long transactions held the audit chain's head (taken by its UPDATE, released at commit or
    # rollback): every audited transaction of every process queues for it, so it bounds the turn rate.
    head_held_s: float = 0.0
    head_holds: int = 0
    _head_taken: dict[int, float] = field(default_factory=dict)

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)
        event.listen(Engine, "rollback", self._release)

    def reset(self) -> None:
        self.kinds.clear()
        self.tables.clear()
        self.statements.clear()
        self.rows_written = 0
        self.head_held_s = 0.0
        self.head_holds = 0

    def _commit(self, conn: Any) -> None:
        self.kinds["COMMIT"] += 1
        self._release(conn)

    def _release(self, conn: Any) -> None:
        taken = self._head_taken.pop(id(conn.connection), None)
        if taken is not None:
            self.head_held_s += time.perf_counter() - taken
            self.head_holds += 1

    def _statement(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                   executemany: bool) -> None:
        self.statements[" ".join(statement.split())[:160]] += 1
        if statement.startswith("UPDATE audit_head SET seq=(audit_head.seq"):
            self._head_taken.setdefault(id(conn.connection), time.perf_counter())
        words = statement.lstrip().split(None, 3)
        kind = words[0].upper() if words else "?"
        if kind in ("INSERT", "UPDATE", "DELETE"):
            at = 2 if kind in ("INSERT", "DELETE") else 1  # INSERT INTO t / DELETE FROM t / UPDATE t
            table = words[at] if len(words) > at else "?"
            rows = len(parameters) if executemany and isinstance(parameters, list | tuple) else 1
            self.rows_written += rows
            self.tables[f"{kind} {table.strip(chr(34))}"] += 1
        elif kind not in ("SELECT", "BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "PRAGMA"):
            kind = "OTHER"
        self.kinds[kind] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"kinds": dict(self.kinds), "tables": dict(self.tables), "rows_written": self.rows_written,
                "statements": dict(self.statements.most_common()), "head_held_s": self.head_held_s,
                "head_holds": self.head_holds}


# ---------------------------------------------------------------- components

# (component, file path fragment, function name or "" for any): the innermost matching frame names
# the component a sample's CPU belongs to. Frames are matched from the leaf up.
COMPONENTS: list[tuple[str, str, str]] = [
    ("audit hash chain (audit.record)", "api/audit/service.py", "record"),
    ("safety screen: classifier", "api/safety/classifier.py", ""),
    ("safety screen: context (last bot question)", "api/safety/context.py", "screen_context"),
    ("safety screen: findings (safety.service.apply)", "api/safety/service.py", "apply"),
    ("spelling correction", "api/conversations/spelling.py", ""),
    ("routing (asks_for_person …)", "api/handoffs/routing.py", ""),
    ("WhatsApp intake check", "api/hcps/intake.py", ""),
    ("contact choice / waiting checks", "api/handoffs/service.py", "answer_contact_choice"),
    ("contact choice / waiting checks", "api/handoffs/waiting.py", ""),
    ("outbox delivery (deliver_pending)", "api/outbox.py", "deliver_pending"),
    ("reply persistence (add_outbound)", "api/conversations/service.py", "add_outbound"),
    ("inbound persistence (persist_inbound)", "api/conversations/service.py", "persist_inbound"),
    ("custom actions (Rasa → api, action logic)", "api/rasa/actions/", ""),
    ("custom actions (Rasa → api, endpoint + txn)", "api/rasa/router.py", ""),
    ("turn step 1: screen transaction (rest)", "api/pipeline/turn.py", "_screen"),
    ("turn step 1: screen (rest; on receipt: in the storing transaction)", "api/pipeline/turn.py", "_screen_loaded"),
    ("turn step 1: screen (rest; on receipt: in the storing transaction)", "api/pipeline/turn.py",
     "screen_on_receipt"),
    ("turn step 3: finish transaction (rest)", "api/pipeline/turn.py", "_finish"),
    ("Rasa REST call (httpx client)", "api/rasa/client.py", ""),
    ("worker: pending-row query", "api/pipeline/worker.py", "_pending"),
    ("inbox sweeper (idle)", "api/pipeline/worker.py", "_conversations_with_pending"),
    ("worker: scheduling", "api/pipeline/worker.py", ""),
    ("web chat: re-read replies + waiting banner", "api/channels/webchat/router.py", "load"),
    ("web chat: session lookup + persist (rest)", "api/channels/webchat/router.py", "persist"),
    ("web chat: session lookup + persist (rest)", "api/channels/webchat/router.py", "store"),
    ("web chat: request parsing / rate limit", "api/channels/webchat/router.py", ""),
    ("HTTP server + framework (uvicorn/starlette/fastapi)", "uvicorn/", ""),
    ("HTTP server + framework (uvicorn/starlette/fastapi)", "starlette/", ""),
    ("HTTP server + framework (uvicorn/starlette/fastapi)", "fastapi/", ""),
    ("logging", "stdlib/logging/", ""),
    ("background (sweepers, periodic jobs, warm-up)", "api/app.py", ""),
    ("WhatsApp ingester poll (idle, 20/s)", "api/channels/whatsapp/ingest.py", ""),
]

DB_FRAGMENTS = ("sqlalchemy/", "psycopg/", "stdlib/sqlite3/", "api/sqlite_writes.py", "api/db.py")


def component_of(stack: tuple[str, ...]) -> str:
    for frame in reversed(stack):
        path, _, func = frame.partition(":")
        for name, fragment, wanted in COMPONENTS:
            if fragment in path and (not wanted or func == wanted or func.startswith(wanted + ".")
                                     or func.endswith("." + wanted)):
                return name
    return "other (event loop, threads, …)"


def is_db(stack: tuple[str, ...]) -> bool:
    return any(f.startswith(DB_FRAGMENTS) for f in stack[-12:])


def breakdown(stacks: Counter[tuple[str, ...]]) -> dict[str, tuple[float, float]]:
    """component -> (CPU seconds, of which in SQLAlchemy / the driver)."""
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for stack, cpu in stacks.items():
        row = out[component_of(stack)]
        row[0] += cpu
        if is_db(stack):
            row[1] += cpu
    return {k: (v[0], v[1]) for k, v in sorted(out.items(), key=lambda kv: -kv[1][0])}


# Work the api does whether or not anybody chats (its share of a run grows with the run's wall time).
IDLE_COMPONENTS = frozenset({"WhatsApp ingester poll (idle, 20/s)", "inbox sweeper (idle)",
                             "background (sweepers, periodic jobs, warm-up)"})


def turn_cpu_s(stacks: Counter[tuple[str, ...]], total_cpu_s: float | None = None) -> float:
    """The sampled CPU of the turns themselves (idle components left out), scaled as in the table."""
    rows = breakdown(stacks)
    sampled = sum(v[0] for v in rows.values()) or 1.0
    scale = (total_cpu_s / sampled) if total_cpu_s else 1.0
    return sum(v[0] for k, v in rows.items() if k not in IDLE_COMPONENTS) * scale


def breakdown_table(stacks: Counter[tuple[str, ...]], turns: int, total_cpu_s: float | None = None) -> str:
    """Markdown: CPU ms per turn by component. With ``total_cpu_s`` (the process's own figure), the
    sampled shares are scaled to it (the sampler misses a little: start-up of threads, its own gaps).
    Idle work (pollers, sweepers) is listed apart, below the turn's own total."""
    rows = breakdown(stacks)
    sampled = sum(v[0] for v in rows.values()) or 1.0
    scale = (total_cpu_s / sampled) if total_cpu_s else 1.0
    turn_total = sum(v[0] for k, v in rows.items() if k not in IDLE_COMPONENTS) or 1.0
    lines = ["| component | CPU ms / turn | share of the turn | of which SQLAlchemy + driver ms |",
             "|---|---|---|---|"]
    for name, (cpu, db) in rows.items():
        if name not in IDLE_COMPONENTS:
            lines.append(f"| {name} | {cpu * scale * 1000 / turns:.2f} | {cpu / turn_total:.0%} | "
                         f"{db * scale * 1000 / turns:.2f} |")
    db_total = sum(v[1] for k, v in rows.items() if k not in IDLE_COMPONENTS) * scale
    lines.append(f"| **the turn** | **{turn_total * scale * 1000 / turns:.2f}** | 100% | "
                 f"{db_total * 1000 / turns:.2f} |")
    for name, (cpu, db) in rows.items():
        if name in IDLE_COMPONENTS:
            lines.append(f"| idle work during the run: {name} | {cpu * scale * 1000 / turns:.2f} | — | "
                         f"{db * scale * 1000 / turns:.2f} |")
    return "\n".join(lines)


def top_functions(stacks: Counter[tuple[str, ...]], turns: int, n: int = 25) -> str:
    """Self CPU (leaf frame) per function, ms per turn."""
    leaf: Counter[str] = Counter()
    for stack, cpu in stacks.items():
        leaf[stack[-1]] += cpu
    return "\n".join(f"{cpu * 1000 / turns:8.3f} ms  {name}" for name, cpu in leaf.most_common(n))


# ---------------------------------------------------------------- flame graph

def _palette(name: str) -> str:
    h = sum(ord(c) for c in name)
    if name.startswith(("api/", "knowledge/", "feedback/")):
        return f"rgb({200 + h % 55},{90 + h % 80},{40 + h % 40})"
    if name.startswith(DB_FRAGMENTS):
        return f"rgb({70 + h % 50},{130 + h % 60},{200 + h % 55})"
    return f"rgb({220 + h % 35},{160 + h % 70},{60 + h % 40})"


def flamegraph_svg(stacks: Counter[tuple[str, ...]], title: str, width: int = 1600,
                   min_fraction: float = 0.0008) -> str:
    """A plain flame graph (root at the bottom); hover a frame for its name and CPU share."""
    tree: dict[str, Any] = {"n": 0.0, "c": {}}
    for stack, cpu in stacks.items():
        node = tree
        node["n"] += cpu
        for frame in stack:
            node = node["c"].setdefault(frame, {"n": 0.0, "c": {}})
            node["n"] += cpu
    total = tree["n"] or 1.0

    def depth(node: dict[str, Any]) -> int:
        kids = [k for k in node["c"].values() if k["n"] / total >= min_fraction]
        return 1 + max((depth(k) for k in kids), default=0)

    row_h, top = 16, 40
    levels = depth(tree)
    height = top + levels * row_h + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">',
           '<rect width="100%" height="100%" fill="#fdfdf8"/>',
           f'<text x="10" y="20" font-size="15">{html.escape(title)}</text>']

    def draw(name: str, node: dict[str, Any], x: float, level: int) -> None:
        w = node["n"] / total * (width - 20)
        y = height - 10 - (level + 1) * row_h
        share = node["n"] / total
        label = html.escape(f"{name} ({share:.1%})")
        out.append(f'<g><title>{label}</title><rect x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" '
                   f'height="{row_h - 1}" fill="{_palette(name)}" rx="2"/>')
        chars = int(w / 6.6)
        if chars >= 4:
            text = name if len(name) <= chars else name[: chars - 2] + ".."
            out.append(f'<text x="{x + 3:.1f}" y="{y + 12}">{html.escape(text)}</text>')
        out.append("</g>")
        cx = x
        for child_name, child in sorted(node["c"].items(), key=lambda kv: kv[0]):
            if child["n"] / total >= min_fraction:
                draw(child_name, child, cx, level + 1)
            cx += child["n"] / total * (width - 20)

    x = 10.0
    draw("all", tree, x, 0)
    out.append("</svg>")
    return "\n".join(out)


def dump(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def merge(counters: Iterable[Counter[tuple[str, ...]]]) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for c in counters:
        out.update(c)
    return out
