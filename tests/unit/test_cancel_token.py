"""The cancel token: callbacks run once each, and one that raises stops nothing else."""

from __future__ import annotations

import logging

import pytest

from treadle.cancel import CancelToken


def test_a_callback_that_raises_is_logged_once_and_the_others_still_run(caplog) -> None:
    token = CancelToken()
    ran: list[str] = []

    def broken(reason: str) -> None:
        raise RuntimeError(f"broken ({reason})")

    token.add_callback(ran.append)
    token.add_callback(broken)
    token.add_callback(ran.append)
    with caplog.at_level(logging.ERROR, logger="treadle"):
        assert token.set("client went away") is True
    assert ran == ["client went away", "client went away"]
    assert token.is_set() and token.wait(0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cancel callback" in errors[0].getMessage()
    assert errors[0].exc_info is not None


def test_a_callback_added_after_the_token_is_set_runs_at_once_and_may_raise(caplog) -> None:
    token = CancelToken()
    token.set("request timeout")

    def broken(reason: str) -> None:
        raise ValueError(reason)

    with caplog.at_level(logging.ERROR, logger="treadle"):
        token.add_callback(broken)  # does not raise into the caller
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"a cancel callback ({broken!r}) raised; ignored"
    ]


def test_set_twice_runs_callbacks_once() -> None:
    token = CancelToken()
    ran: list[str] = []
    token.add_callback(ran.append)
    assert token.set("a") is True
    assert token.set("b") is False
    assert ran == ["a"] and token.reason == "a"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_a_callback_may_still_stop_the_process(exc) -> None:
    token = CancelToken()

    def stop(_reason: str) -> None:
        raise exc

    token.add_callback(stop)
    with pytest.raises(exc):
        token.set("shutdown")
