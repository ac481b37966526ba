"""``MiniLMSentenceFeaturizer``: a Rasa dense featurizer adding the all-MiniLM-L6-v2 sentence vector.

Pre-trained sentence vectors let the intent classifier recognise paraphrases it was never shown
(short form answers, small talk, out-of-scope wording) where word and character n-gram counts
alone cannot. The vector is added as a *sentence* feature of ``text`` only (no sequence feature):
``LogisticRegressionClassifier`` stacks it beside the sparse n-gram counts. ``scale`` weighs the
unit-length vector against the counts under the classifier's L2 penalty (chosen by
cross-validation on the training data: ``benchmarks/RESULTS-nlu.md``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from concierge_nlu.minilm import MiniLMEncoder

log = logging.getLogger(__name__)

_ENCODER: MiniLMEncoder | None = None
_LOCK = threading.Lock()


def _encoder(model_dir: str | None) -> MiniLMEncoder:
    """One encoder per process (the weights are ~90 MB); built on first use."""
    global _ENCODER
    with _LOCK:
        if _ENCODER is None:
            _ENCODER = MiniLMEncoder(model_dir) if model_dir else MiniLMEncoder()
            log.info("MiniLM sentence encoder loaded from %s", _ENCODER.directory)
        return _ENCODER


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class MiniLMSentenceFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds ``scale`` × the unit-length MiniLM sentence vector of a message's text."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**DenseFeaturizer.get_default_config(), "scale": 1.0, "model_dir": None}

    @staticmethod
    def required_packages() -> list[str]:
        return ["tokenizers", "safetensors"]

    def __init__(self, config: dict[str, Any], name: str) -> None:
        super().__init__(name, config)
        self.scale = float(self._config["scale"])
        self.model_dir = self._config.get("model_dir")

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> MiniLMSentenceFeaturizer:
        component = cls(config, execution_context.node_name)
        _encoder(component.model_dir)  # load the weights with the model, not on the first message
        return component

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        scale = config.get("scale", 1.0)
        if not isinstance(scale, (int, float)) or scale <= 0:
            raise ValueError(f"MiniLMSentenceFeaturizer: scale must be a positive number, not {scale!r}")

    def process(self, messages: list[Message]) -> list[Message]:
        todo = [m for m in messages if isinstance(m.get(TEXT), str)]
        if not todo:
            return messages
        encoder = _encoder(self.model_dir)
        # A blank text gets a zero vector, not none: the classifier needs the same width for every message.
        vectors = np.zeros((len(todo), encoder.dim), dtype=np.float32)
        filled = [i for i, m in enumerate(todo) if m.get(TEXT).strip()]
        if filled:
            vectors[filled] = encoder.embed([todo[i].get(TEXT) for i in filled]) * np.float32(self.scale)
        for message, vector in zip(todo, vectors, strict=True):
            self.add_features_to_message(sequence=None, sentence=vector[None, :], attribute=TEXT, message=message)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self.process(training_data.training_examples)
        return training_data
