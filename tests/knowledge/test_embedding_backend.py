"""The single-query embedding backend: torch (TorchScript) or ONNX Runtime, same vectors either way."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from api.settings import Settings
from knowledge.embedding import SentenceTransformerEmbedder

QUERIES = ["how do I store the respizan pen?", "cardiovex max dose in CKD", "", "dose " * 200, "Ünïcödé 💊 mg/kg"]


def test_unknown_backend_is_refused_with_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown embedding backend 'tensorflow': expected one of torch, onnx"):
        SentenceTransformerEmbedder(backend="tensorflow", onnx_dir=tmp_path)
    monkeypatch.setenv("CONCIERGE_EMBED_BACKEND", "tensorflow")
    with pytest.raises(ValidationError, match="embed_backend"):
        Settings()


def test_backend_and_export_directory_come_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_EMBED_BACKEND", "onnx")
    monkeypatch.setenv("CONCIERGE_VAR_DIR", str(tmp_path))
    emb = SentenceTransformerEmbedder()
    assert emb.requested_backend == "onnx"
    assert emb._onnx_dir == tmp_path / "models" / "onnx"
    monkeypatch.delenv("CONCIERGE_EMBED_BACKEND")
    assert SentenceTransformerEmbedder().requested_backend == "torch"  # the default


@pytest.mark.slow
@pytest.mark.timeout(900)  # loads the real model (minutes on a loaded 2-core box)
def test_onnx_without_onnxruntime_falls_back_to_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    emb = SentenceTransformerEmbedder(backend="onnx", onnx_dir=tmp_path, cache_size=0)
    with caplog.at_level(logging.WARNING, logger="concierge.knowledge.embedding"):
        v = emb.embed([QUERIES[0]])
    assert emb.backend == "torch" and "onnxruntime is not installed" in caplog.text
    ref = SentenceTransformerEmbedder(backend="torch", onnx_dir=tmp_path, cache_size=0).embed([QUERIES[0]])
    np.testing.assert_allclose(v, ref, atol=1e-6)
    assert not list(tmp_path.iterdir())  # nothing exported


@pytest.mark.slow
@pytest.mark.timeout(900)  # loads the real model (minutes on a loaded 2-core box)
def test_onnx_backend_exports_once_and_gives_the_torch_vectors(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")  # needed by torch's exporter for the first export
    onnx_dir = tmp_path / "onnx"
    emb = SentenceTransformerEmbedder(backend="onnx", onnx_dir=onnx_dir, cache_size=0)
    torch_emb = SentenceTransformerEmbedder(backend="torch", onnx_dir=onnx_dir, cache_size=0)
    for q in QUERIES:
        a, b = emb.embed([q]), torch_emb.embed([q])
        assert a.shape == (1, 384) and a.dtype == np.float32
        assert float(a[0] @ b[0]) >= 1 - 1e-5, q
        np.testing.assert_allclose(np.linalg.norm(a), 1.0, atol=1e-5)
    assert emb.backend == "onnx" and torch_emb.backend == "torch"
    (exported,) = onnx_dir.glob("all-MiniLM-L6-v2-*-opset17.onnx")
    assert not list(onnx_dir.glob("*.tmp"))
    stamp = exported.stat().st_mtime_ns

    again = SentenceTransformerEmbedder(backend="onnx", onnx_dir=onnx_dir, cache_size=0)
    again.embed([QUERIES[1]])
    assert again.backend == "onnx" and exported.stat().st_mtime_ns == stamp  # reused, not re-exported

    exported.write_bytes(b"not an onnx model")  # a damaged file: torch answers, with a warning
    broken = SentenceTransformerEmbedder(backend="onnx", onnx_dir=onnx_dir, cache_size=0)
    with caplog.at_level(logging.WARNING, logger="concierge.knowledge.embedding"):
        v = broken.embed([QUERIES[1]])
    assert broken.backend == "torch" and "embedding backend onnx unavailable" in caplog.text
    np.testing.assert_allclose(v, torch_emb.embed([QUERIES[1]]), atol=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(900)  # loads the real model
def test_a_batch_uses_every_core_then_gives_the_query_path_its_one_thread_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    texts = ["Store unopened pens in a refrigerator.", "Take with food to reduce nausea.",
             "Not studied in patients under 12 years.", "Ünïcödé 💊 mg/kg", "x" * 3000]
    monkeypatch.setenv("CONCIERGE_EMBED_BATCH_THREADS", "1")
    emb = SentenceTransformerEmbedder(threads=1, backend="torch", onnx_dir=tmp_path)
    one_thread = emb.embed(texts)
    seen: list[int] = []
    real_encode = emb.load().encode

    def encode(*args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(emb.load(), "encode", encode)
    monkeypatch.setenv("CONCIERGE_EMBED_BATCH_THREADS", "2")
    two_threads = emb.embed(texts)
    assert seen == [2]
    assert torch.get_num_threads() == 1  # the single-query path is back on its own thread count
    assert np.allclose(one_thread, two_threads, atol=1e-5)
    monkeypatch.setenv("CONCIERGE_EMBED_BATCH_THREADS", "not a number")  # falls back to every core
    emb.embed(texts[:2])
    assert seen[-1] == max(1, os.cpu_count() or 1)
