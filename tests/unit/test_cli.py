"""The real ``treadle`` argument parser: what a user who types a flag sees.

Each test runs build_parser() (or the installed command in a subprocess) on argv and
checks the Config, or the usage line, error line and exit status a user would read.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from treadle.cli import add_setting_arguments, build_parser, config_from, settings_from_args
from treadle.config import Config, flag_of, iter_settings, settings_from_env
from treadle.errors import ConfigError
from treadle.foreign_flags import REFUSED, refused_flags
from treadle.settings_doc import claimed_flags, shown_default

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> Config:
    return config_from(build_parser().parse_args(["serve", *argv]))


def fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Parse argv, expect exit status 2, return what went to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def treadle_script() -> list[str]:
    """The installed ``treadle`` command, as a user runs it (python -m treadle if absent)."""
    script = Path(sys.executable).with_name("treadle")
    return [str(script)] if script.exists() else [sys.executable, "-m", "treadle"]


def run_treadle(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*treadle_script(), *argv], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


# -- mistyped and abbreviated flags ----------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("--thread", "--threads"), ("--bnd", "--bind"), ("--max-queu", "--max-queue")],
)
def test_a_mistyped_flag_shows_serve_usage_and_the_closest_flag(capsys, typed, meant) -> None:
    err = fails(capsys, "serve", typed, "4", "x:y")
    assert err.startswith("usage: treadle serve ")
    assert f"unrecognized argument: {typed} (did you mean {meant}?)" in err
    assert "{serve}" not in err  # not the top-level usage


def test_a_mistyped_flag_with_equals_is_named_without_its_value(capsys) -> None:
    err = fails(capsys, "serve", "--thraeds=4", "x:y")
    assert "unrecognized argument: --thraeds (did you mean --threads?)" in err


@pytest.mark.parametrize(
    ("typed", "guess"),
    [("--bind", None), ("--proxy-protocol", None), ("--from-confg", "--from-config")],
)
def test_mongrel2_guesses_only_among_its_own_flags(capsys, typed, guess) -> None:
    # It takes fewer settings than serve: a serve-only flag is not "meant" as itself.
    err = fails(capsys, "mongrel2", "x:y", "tcp://127.0.0.1:5", typed, "v")
    assert err.startswith("usage: treadle mongrel2 ")
    if guess is None:
        assert f"unrecognized argument: {typed}" in err
        assert f"did you mean {typed}?" not in err  # as it said before, for serve's flags
    else:
        assert f"unrecognized argument: {typed} (did you mean {guess}?)" in err


def test_a_flag_far_from_every_known_one_gets_no_guess(capsys) -> None:
    err = fails(capsys, "serve", "--zzzzzz", "x:y")
    assert "unrecognized argument: --zzzzzz\n" in err
    assert "did you mean" not in err


def test_an_extra_positional_is_named(capsys) -> None:
    err = fails(capsys, "serve", "x:y", "extra")
    assert err.startswith("usage: treadle serve ")
    assert "unrecognized arguments: extra" in err


def test_no_flag_is_ever_abbreviated(capsys) -> None:
    """Every long flag with its last letter dropped is an error, never the flag itself."""
    known = claimed_flags()
    for flag in sorted(known):
        short = flag[:-1]
        if not flag.startswith("--") or short in known or len(short) < 3:
            continue
        err = fails(capsys, "serve", short, "1", "x:y")
        assert f"unrecognized argument: {short}" in err, (flag, err)


def test_the_installed_command_shows_serve_usage_for_a_typo() -> None:
    result = run_treadle("serve", "--thread", "4", "x:y")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: treadle serve "), result.stderr
    assert "did you mean --threads?" in result.stderr
    assert "Listening" not in result.stderr + result.stdout


# -- values --------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["DEBUG", "debug", "Debug", " debug "])
def test_log_level_in_any_case(level) -> None:
    assert parse("--log-level", level, "x:y").logging.log_level == "debug"


def test_log_level_from_the_environment_in_any_case() -> None:
    assert settings_from_env({"TREADLE_LOG_LEVEL": "WARNING"}) == {"log_level": "warning"}


def test_an_unknown_log_level_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="--log-level must be one of critical, error"):
        parse("--log-level", "loud", "x:y")


def test_a_bad_value_names_its_flag_and_its_variable() -> None:
    with pytest.raises(ConfigError, match="^--threads: not a whole number: 'many'$"):
        parse("--threads", "many", "x:y")
    with pytest.raises(ConfigError, match="^TREADLE_KEEP_ALIVE: not a number of seconds"):
        settings_from_env({"TREADLE_KEEP_ALIVE": "long"})


# -- --help --------------------------------------------------------------------------------


def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere


def test_help_shows_defaults_as_a_user_types_them(capsys) -> None:
    text = help_text(capsys)
    assert "--threads N Threads that run the app. (default: 16)" in text
    assert "(default: 8K)" in text  # --max-request-line, 8192 bytes
    assert "larger gets 413 before it is read. (default: 100M)" in text
    assert "finish before exit. (default: 30)" in text
    assert "(default: tcp:8000:interface=127.0.0.1)" in text
    assert "(default: stderr)" in text  # --log-file


def test_help_shows_every_settings_default_and_alias(capsys) -> None:
    text = help_text(capsys)
    for _, spec in iter_settings():
        assert flag_of(spec) in text
        assert f"(default: {shown_default(spec)})" in text, spec.name
    assert "-b ENDPOINT, --bind ENDPOINT" in text
    assert "--access-log -|PATH, --access-logfile -|PATH" in text


def test_help_does_not_list_refused_flags(capsys) -> None:
    text = help_text(capsys)
    assert "--worker-class" not in text and "--daemon" not in text


# -- gunicorn's and waitress's spellings ---------------------------------------------------


def test_gunicorn_and_waitress_spellings_with_the_same_meaning_are_aliases() -> None:
    config = parse(
        "-b",
        "127.0.0.1:0",
        "--access-logfile",
        "-",
        "--error-logfile",
        "/tmp/treadle-errors.log",
        "--limit-request-line",
        "4K",
        "--limit-request-fields",
        "50",
        "--max-request-header-size",
        "32K",
        "--max-request-body-size",
        "10M",
        "--url-prefix",
        "/app",
        "--call",
        "x:y",
    )
    assert config.listen.bind == ("127.0.0.1:0",)
    assert config.logging.access_log == "-"
    assert config.logging.log_file == "/tmp/treadle-errors.log"
    assert config.limits.max_request_line_bytes == 4096
    assert config.limits.max_header_count == 50
    assert config.limits.max_header_bytes == 32 * 1024
    assert config.limits.max_body_bytes == 10 * 1024 * 1024
    assert config.app.script_name == "/app"
    assert config.app.factory is True


def test_worker_connections_is_max_connections_as_in_gunicorn() -> None:
    assert parse("--worker-connections", "500", "x:y").listen.max_connections == 500
    assert parse("--connection-limit", "50", "x:y").listen.max_connections == 50


def test_an_alias_and_its_flag_add_up_when_repeatable() -> None:
    assert parse("-b", "tcp:1", "--bind", "tcp:2", "x:y").listen.bind == ("tcp:1", "tcp:2")


def test_error_logfile_dash_means_stderr_as_in_gunicorn() -> None:
    assert parse("--error-logfile", "-", "x:y").logging.log_file is None


def test_gunicorns_unlimited_zero_is_refused_not_taken_as_refuse_everything() -> None:
    with pytest.raises(ConfigError, match="--max-request-line must be at least 1"):
        parse("--limit-request-line", "0", "x:y")
    with pytest.raises(ConfigError, match="--max-header-count must be at least 1"):
        parse("--limit-request-fields", "0", "x:y")


def test_a_config_file_is_refused_and_never_taken_as_the_app(capsys) -> None:
    err = fails(capsys, "serve", "-c", "config.py", "app:app")
    assert err.startswith("usage: treadle serve ")
    assert "-c: config files are not supported yet" in err


def test_gunicorns_timeout_is_refused_saying_what_treadle_does_instead(capsys) -> None:
    err = fails(capsys, "serve", "--timeout", "30", "app:app")
    assert "--timeout: gunicorn's --timeout kills a silent worker process" in err
    assert "--request-timeout" in err and "--graceful-timeout" in err


@pytest.mark.parametrize(
    "flag", [flag for _, flag, _ in refused_flags(claimed_flags())], ids=lambda flag: flag
)
def test_each_refused_flag_fails_with_its_advice(capsys, flag) -> None:
    advice = next(advice for _, spellings, advice in REFUSED if flag in spellings)
    for argv in (["serve", flag, "app:app"], ["serve", "app:app", flag]):
        err = fails(capsys, *argv)
        assert f"{flag}: {advice}" in err
        assert "unrecognized" not in err


def test_a_refused_spelling_yields_to_a_setting_that_claims_it() -> None:
    """When --workers becomes a setting with alias -w, neither is refused any more."""
    left = {flag for _, flag, _ in refused_flags({"-w", "--workers"})}
    assert "-w" not in left and "--workers" not in left
    assert "-k" in left


def test_no_refused_flag_is_also_a_setting() -> None:
    claimed = claimed_flags()
    assert not [flag for _, flags, _ in REFUSED for flag in flags if flag in claimed]


def test_the_installed_command_refuses_a_config_file() -> None:
    result = run_treadle("serve", "-c", "config.py", "tests.apps.hello:app")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("treadle serve: error: -c: config files are not supported yet")
    assert "Listening" not in result.stderr + result.stdout


# -- a host parser (Django's manage.py server) ---------------------------------------------


def test_a_host_parser_keeps_its_own_spellings() -> None:
    """Django's parser owns --pythonpath; an app's command might own -b: both stay theirs."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("-b", dest="host_b", action="store_true")
    parser.add_argument("--pythonpath", dest="pythonpath")
    add_setting_arguments(parser)
    namespace = parser.parse_args(["-b", "--bind", "tcp:9", "--pythonpath", "/x"])
    assert namespace.host_b is True
    assert namespace.pythonpath == "/x"
    assert settings_from_args(namespace)["bind"] == ("tcp:9",)
    assert settings_from_args(parser.parse_args(["--access-logfile", "-"]))["access_log"] == "-"


# -- before the command --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["app:app"], ["-b", "127.0.0.1:0", "app:app"], ["--threads", "4", "app:app"]],
)
def test_an_app_typed_as_for_gunicorn_shows_the_line_to_type(capsys, argv) -> None:
    err = fails(capsys, *argv)
    assert f"the command comes first; did you mean: treadle serve {' '.join(argv)}" in err


def test_a_mistyped_command_names_serve(capsys) -> None:
    err = fails(capsys, "srve", "app:app")
    assert "unknown command 'srve' (did you mean serve?)" in err


def test_version_needs_no_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("treadle ")
