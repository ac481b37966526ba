"""Custom Rasa NLU components of HCP Concierge (loaded by Rasa from ``bot/components`` on PYTHONPATH).

``minilm`` is plain numpy + ``tokenizers`` + ``safetensors`` (importable from the api's Python 3.11
virtualenv too, where tests compare it with sentence-transformers); ``featurizer`` needs Rasa.
"""
