"""Settings are defined once: the CLI, the environment and docs/settings.md come from config.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from treadle.cli import build_parser, config_from
from treadle.config import Config, settings_from_env
from treadle.errors import ConfigError
from treadle.settings_doc import render_settings_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_committed_settings_docs_match_the_definitions() -> None:
    assert DOCS.read_text() == render_settings_markdown(), (
        "docs/settings.md drifted: run python -m treadle.settings_doc > docs/settings.md"
    )


def test_flags_override_environment_which_overrides_defaults(monkeypatch) -> None:
    monkeypatch.setenv("TREADLE_THREADS", "3")
    monkeypatch.setenv("TREADLE_MAX_QUEUE", "7")
    namespace = build_parser().parse_args(["serve", "x:app", "--threads", "5", "--max-body", "2M"])
    config = config_from(namespace)
    assert config.pool.threads == 5
    assert config.pool.max_queue == 7
    assert config.limits.max_body_bytes == 2 * 1024 * 1024
    assert config.timeouts.graceful_timeout_s == 30.0


def test_repeatable_and_boolean_flags() -> None:
    namespace = build_parser().parse_args(
        ["serve", "x:app", "--bind", "tcp:1", "--bind", "unix:/tmp/s", "--factory"]
    )
    config = config_from(namespace)
    assert config.listen.bind == ("tcp:1", "unix:/tmp/s")
    assert config.app.factory is True


def test_environment_lists_split_on_commas() -> None:
    assert settings_from_env({"TREADLE_BIND": "tcp:1,tcp:2"}) == {"bind": ("tcp:1", "tcp:2")}


@pytest.mark.parametrize(
    "settings",
    [
        {"threads": 0},
        {"script_name": "app"},
        {"script_name": "/app/"},
        {"nonsense": 1},
        {"static": ("nodir",)},
    ],
)
def test_bad_settings_are_refused(settings) -> None:
    with pytest.raises(ConfigError):
        Config.from_settings(settings)


def test_bad_values_name_the_problem(monkeypatch) -> None:
    monkeypatch.setenv("TREADLE_THREADS", "many")
    with pytest.raises(ConfigError, match="not a whole number"):
        settings_from_env()
