"""The environment the product gives each Rasa server it starts: TensorFlow's and BLAS's thread pools capped."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.rasa import process
from api.settings import Settings

TF_VARS = process.RASA_THREAD_VARS


@pytest.fixture(autouse=True)
def _no_operator_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TF_VARS:
        monkeypatch.delenv(name, raising=False)


def test_rasa_gets_one_thread_per_compute_pool_by_default(tmp_path: Path) -> None:
    env = process.rasa_env(Settings(var_dir=tmp_path))
    assert [env[name] for name in TF_VARS] == ["1"] * 5


def test_the_thread_count_follows_the_setting(tmp_path: Path) -> None:
    env = process.rasa_env(Settings(var_dir=tmp_path, rasa_threads=3))
    assert [env[name] for name in TF_VARS] == ["3"] * 5


def test_zero_leaves_tensorflow_its_own_default(tmp_path: Path) -> None:
    env = process.rasa_env(Settings(var_dir=tmp_path, rasa_threads=0))
    assert not any(name in env for name in TF_VARS)


def test_an_operators_own_value_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_INTRA_OP_PARALLELISM_THREADS", "2")
    env = process.rasa_env(Settings(var_dir=tmp_path))
    assert env["TF_INTRA_OP_PARALLELISM_THREADS"] == "2"
    assert env["TF_INTER_OP_PARALLELISM_THREADS"] == "1"


def test_a_negative_thread_count_is_refused() -> None:
    with pytest.raises(ValueError, match="rasa_threads"):
        Settings(rasa_threads=-1)
