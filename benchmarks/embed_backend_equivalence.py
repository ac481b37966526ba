"""Does the ONNX Runtime query embedder change any product decision? torch vs onnx on the held-out sets.

    HF_HUB_OFFLINE=1 python benchmarks/embed_backend_equivalence.py [--clinc-limit 500]

Needs ``onnxruntime`` (and ``onnx`` for the first export). Both knowledge bases share one index
(passages embedded once by sentence-transformers); each held-out query and a CLINC150 val sample
is decided through the product's single-query path, once per backend, and the top-5 lists,
answer/escalate decisions, scores and query vectors are compared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.retrieval import LIBRARIES, SHARED  # noqa: E402
from knowledge.embedding import SentenceTransformerEmbedder  # noqa: E402
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase  # noqa: E402
from knowledge.evaluation import read_clinc, read_queries  # noqa: E402
from knowledge.gate import Recipient  # noqa: E402
from knowledge.library import parse_library  # noqa: E402

TODAY = date(2026, 11, 23)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinc-limit", type=int, default=500, help="CLINC150 val utterances per library")
    args = parser.parse_args(argv)
    torch_emb = SentenceTransformerEmbedder(backend="torch", cache_size=0)
    onnx_emb = SentenceTransformerEmbedder(backend="onnx", cache_size=0)
    onnx_emb.embed(["warm up"])
    if onnx_emb.backend != "onnx":
        print("ONNX Runtime backend unavailable (see the warning above): nothing to compare", file=sys.stderr)
        return 1
    clinc = read_clinc(SHARED / "eval" / "clinc150" / "val.jsonl", limit=args.clinc_limit)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (lib, qpath) in LIBRARIES.items():
            library = parse_library(lib)
            a = LibraryKnowledgeBase(library, KnowledgeBase(Path(tmp) / name, embedder=torch_emb))
            b = LibraryKnowledgeBase(library, KnowledgeBase(Path(tmp) / name, embedder=onnx_emb))
            queries = read_queries(qpath) + clinc
            same_top = same_list = same_answer = 0
            max_diff, min_cos = 0.0, 1.0
            for q in queries:
                recipient = Recipient(q.market, q.audience, verified=True)
                da, db = a.decide(q.text, recipient, TODAY), b.decide(q.text, recipient, TODAY)
                ia, ib = [c[:2] for c in da.candidate_ids], [c[:2] for c in db.candidate_ids]
                same_list += ia == ib
                same_top += ia[:1] == ib[:1]
                same_answer += da.answer == db.answer
                max_diff = max([max_diff] + [abs(x[2] - y[2]) for x, y in zip(da.candidate_ids, db.candidate_ids,
                                                                                strict=False)])
                min_cos = min(min_cos, float(torch_emb.embed([q.text])[0] @ onnx_emb.embed([q.text])[0]))
            print(f"{name}: {len(queries)} queries: same top-1 {same_top}, same top-5 list {same_list}, "
                  f"same answer/escalate {same_answer}; max |score difference| {max_diff:.2e}; "
                  f"lowest query-vector cosine {min_cos:.7f}", flush=True)
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
