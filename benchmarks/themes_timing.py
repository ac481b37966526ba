"""Theme-job timing on N synthetic comments (``python -m benchmarks.themes_eval --timing N``).

Synthetic comments are built from 30 templates with interchangeable slots (products, topics,
channels, times, some names and phone numbers); half of them get a second sentence and a
greeting or sign-off (about 64k of 100k are distinct texts; real comments are more varied). The job embeds
each distinct text once, so duplicates would flatter the timing.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta

from feedback.themes import FeedbackItem, compute_themes

TEMPLATES = (
    "I want to talk to a real person about {product}",
    "can I speak to my rep about {topic} {when}",
    "you send me too many messages about {product}",
    "{when} I got {n} reminders, too many",
    "the {doc} for {product} is out of date",
    "this {doc} is outdated, the {topic} section changed",
    "I cannot log in to the {channel} portal {when}",
    "the link to the {doc} is broken on {channel}",
    "samples of {product} arrived late {when}",
    "my {product} samples never arrived",
    "the answer about {topic} for {product} was very helpful",
    "great answer on {topic}, thanks",
    "the answer on {topic} was incomplete, nothing on {topic2}",
    "not relevant to my {specialty} patients",
    "please send the {doc} by {channel2} instead",
    "the webinar on {topic} was excellent",
    "the {specialty} congress session on {product} was useful",
    "reply was too long to read on my phone",
    "quick reply {when}, much appreciated",
    "could you cover {topic} in {population}?",
    "Dr {surname} asked me about {topic} for {product}",
    "call me on 07700 9{digits} about {product}",
    "the rep {first} never called back {when}",
    "the MSL explained {topic} well",
    "the bot did not understand my question about {topic}",
    "I keep getting the same answer about {topic}",
    "{product} {doc} missing the {topic2} table",
    "answers about {product} are slow {when}",
    "prefer {channel2} messages once a {period}",
    "stop the surveys after every {product} question",
)
SLOTS = {
    "product": ["Cardiovex", "Respizan", "Glucorel", "velostatin", "zelvamab", "ferlaglutide"],
    "topic": ["renal dosing", "hepatic impairment", "pregnancy", "drug interactions", "storage", "titration",
              "elderly patients", "missed doses", "switching", "contraindications", "side effects", "monitoring"],
    "topic2": ["paediatric use", "dose adjustment", "efficacy data", "safety data", "administration"],
    "doc": ["SmPC", "leaflet", "prescribing information", "guideline", "dosing card", "PDF", "slide deck"],
    "channel": ["web", "WhatsApp", "HCP", "mobile", "partner"],
    "channel2": ["email", "WhatsApp", "SMS", "post", "web chat"],
    "when": ["today", "yesterday", "this week", "again", "every morning", "last night", "on Monday"],
    "n": ["3", "4", "5", "6", "7", "8"],
    "specialty": ["cardiology", "respiratory", "diabetes", "GP", "renal", "geriatric"],
    "population": ["children", "the elderly", "renal impairment", "pregnancy", "adolescents"],
    "period": ["week", "month", "fortnight", "quarter"],
    "surname": ["Okafor", "Lindqvist", "Haddad", "Brennan", "Moreau", "Kowalczyk"],
    "first": ["Tom", "Anna", "Priya", "Jonas", "Claire"],
    "digits": [f"{i:05d}" for i in range(100)],
}


def synthetic_comments(n: int, seed: int = 0) -> list[FeedbackItem]:
    rng = random.Random(seed)
    start = datetime(2031, 1, 1, tzinfo=UTC)
    items = []
    for i in range(n):
        text = rng.choice(TEMPLATES).format(**{k: rng.choice(v) for k, v in SLOTS.items()})
        if rng.random() < 0.5:
            second = rng.choice(TEMPLATES).format(**{k: rng.choice(v) for k, v in SLOTS.items()})
            text = f"{text}. {second[0].upper()}{second[1:]}"
        if rng.random() < 0.5:
            text = rng.choice(["Hi, ", "Hello - ", "Honestly, ", "FYI ", "Dear team, "]) + text
            text += rng.choice([".", "!", " :(", " pls", ". Thanks", ". Regards"])
        items.append(FeedbackItem("comment", f"s{i}", start + timedelta(minutes=rng.randrange(90 * 24 * 60)),
                                  text=text))
    return items


def run_timing(n: int, embed_sample: int) -> str:
    from knowledge.embedding import HashingEmbedder, SentenceTransformerEmbedder

    items = synthetic_comments(n)
    distinct = sorted({" ".join(i.text.lower().split()) for i in items})
    lines = [f"{n} synthetic comments, {len(distinct)} distinct texts; "
             f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"]

    embedder = SentenceTransformerEmbedder()
    t0 = time.perf_counter()
    embedder.load()
    load_s = time.perf_counter() - t0
    sample = random.Random(1).sample(distinct, min(embed_sample, len(distinct)))
    t0 = time.perf_counter()
    embedder.embed(sample)
    embed_s = time.perf_counter() - t0
    rate = len(sample) / embed_s
    lines.append(f"MiniLM: model load {load_s:.1f} s; {len(sample)} comments embedded in {embed_s:.1f} s "
                 f"= {rate:.0f} comments/s (1 torch thread, batch 512)")
    lines.append(f"MiniLM embedding of all {len(distinct)} distinct texts, extrapolated: "
                 f"{len(distinct) / rate / 60:.1f} min")

    t0 = time.perf_counter()
    result = compute_themes(items, HashingEmbedder())
    rest_s = time.perf_counter() - t0
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    lines.append(f"rest of the job on all {n} comments (stand-in 256-d hashing vectors): {rest_s:.1f} s ({parts}); "
                 f"{len(result.themes)} themes")
    non_embed = rest_s - result.timings.get("embed", 0.0)
    lines.append(f"estimated full job with MiniLM: {(len(distinct) / rate + non_embed) / 60:.1f} min; "
                 f"if all {n} comments were distinct: {(n / rate + non_embed) / 60:.1f} min")
    top = ", ".join(f"{t.label} ({t.count})" for t in result.themes[:8])
    lines.append(f"largest themes: {top}")
    return "\n".join(lines)
