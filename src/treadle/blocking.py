"""treadle.wait / treadle.call: an app thread blocks on a Deferred, coroutine or reactor call.

Thread-bridge layer: Twisted Deferreds and threads only, no sockets, no transports. The app
thread never touches the Deferred it waits on: everything Twisted runs in the reactor thread,
and the result crosses back through one lock. Waits are cancelled by the request's token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from inspect import iscoroutine
from threading import Lock, get_ident
from time import perf_counter
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from treadle.cancel import current_request
from treadle.errors import NotInAppThread, RequestCancelled, WaitTimeout

log = logging.getLogger("treadle")


class _ThreadsReactor(Protocol):
    """What blocking.py needs from the reactor (IReactorFromThreads)."""

    def callFromThread(self, f: Callable[..., object], *args: object, **kwargs: object) -> None: ...


# (reactor, ident of the reactor thread) while a server runs; one tuple, so readers in app
# threads never see a reactor paired with the wrong thread.
_installed: tuple[_ThreadsReactor, int] | None = None
# Waiters whose work has started in the reactor; touched only by the reactor thread.
_pending: set[_Waiter] = set()

_NO_KWARGS: dict[str, Any] = {}
# Why a wait ended early; stored in _Waiter.cancelled.
_TIMEOUT, _REQUEST, _SHUTDOWN = "timeout", "request", "shutdown"


def install(reactor: _ThreadsReactor) -> None:
    """Remember the reactor and this thread as the reactor thread.

    Called in the reactor thread (the thread that runs or will run the reactor), by the
    server's service at startService.
    """
    global _installed
    _installed = (reactor, get_ident())


def uninstall() -> None:
    """Forget the reactor; waits already handed to it end with RequestCancelled.

    Called in the reactor thread, at stopService.
    """
    global _installed
    _installed = None
    for waiter in list(_pending):
        _cancel(waiter, _SHUTDOWN)


def wait(x: Any, timeout: float | None = None) -> Any:
    """Block until ``x`` has a result in the reactor thread; return it or raise its exception.

    ``x`` is a Deferred, a coroutine, a callable returning either (or a plain value), or a
    plain value. Callables are called and coroutines started in the reactor thread. Past
    ``timeout`` seconds the Deferred is cancelled and WaitTimeout raised; if the current
    request is cancelled meanwhile, RequestCancelled. The Deferred's result is consumed.
    Called in an app thread.
    """
    return _submit(x, None, _NO_KWARGS, timeout, "treadle.wait")


def call(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``f(*args, **kwargs)`` in the reactor thread; return its result, awaited if it is a
    Deferred or coroutine. Cancelled with the current request, like wait(). Called in an app
    thread.
    """
    if not callable(f):
        raise TypeError(f"treadle.call needs a callable, not {type(f).__name__}")
    return _submit(f, args, kwargs, None, "treadle.call")


class _Waiter:
    """One pending wait: the lock the app thread sleeps on and what the reactor left for it.

    Created in the app thread; ``result``, ``deferred``, ``released`` and ``cancelled`` are
    written only in the reactor thread, before the lock is released.
    """

    __slots__ = ("lock", "installed", "result", "deferred", "released", "cancelled")

    def __init__(self, installed: tuple[_ThreadsReactor, int]) -> None:
        """Called in the app thread that will wait."""
        self.lock = Lock()  # _thread's lock: the cheapest primitive that can block
        self.lock.acquire()  # released exactly once, by _finish in the reactor thread
        self.installed = installed
        self.result: Any = None  # a value or a Failure
        self.deferred: Deferred[Any] | None = None
        self.released = False
        self.cancelled: str | None = None

    def __call__(self, reason: str) -> None:
        """Token callback: cancel this wait. Called in the thread that sets the token."""
        reactor, reactor_ident = self.installed
        if get_ident() == reactor_ident:
            _cancel(self, _REQUEST)
        else:
            reactor.callFromThread(_cancel, self, _REQUEST)


def _submit(
    x: Any, args: tuple[Any, ...] | None, kwargs: dict[str, Any], timeout: float | None, name: str
) -> Any:
    """The body of wait() and call(). Called in an app thread."""
    installed = _installed
    if installed is None:
        _discard_unstarted(x, None)
        raise NotInAppThread(
            f"no treadle server is running in this process; {name} needs the reactor of a "
            "running treadle server (it is installed at startService)"
        )
    reactor, reactor_ident = installed
    if get_ident() == reactor_ident:
        _discard_unstarted(x, None)
        raise NotInAppThread(
            f"{name} called in the reactor thread; it would block the reactor forever. "
            "Return or await the Deferred instead."
        )
    record = current_request()
    if args is None and _already_done(x):
        return _take_result(x, record)
    if record is None and timeout is None:
        # The hot path: no request to account to, nothing to cancel it.
        waiter = _Waiter(installed)
        reactor.callFromThread(_start, waiter, x, args, kwargs)
        try:
            waiter.lock.acquire()
        except BaseException:
            # KeyboardInterrupt in the main thread: do not leave the work running.
            reactor.callFromThread(_cancel, waiter, _REQUEST)
            raise
        return _outcome(waiter, x, timeout, "")
    token = record.cancel if record is not None else None
    if token is not None and token.is_set():
        _discard_unstarted(x, reactor)
        raise RequestCancelled(f"request cancelled ({token.reason}) before {name}")
    waiter = _Waiter(installed)
    started = perf_counter()
    if record is not None:
        record.waiting_on = _describe(x, args)
    reactor.callFromThread(_start, waiter, x, args, kwargs)
    try:
        if token is not None:
            token.add_callback(waiter)  # runs at once if the token was set just now
        if not waiter.lock.acquire(True, -1 if timeout is None else max(timeout, 0.0)):
            reactor.callFromThread(_cancel, waiter, _TIMEOUT)
            # _cancel always releases the lock, with the canceller already run.
            waiter.lock.acquire()
    except BaseException:
        reactor.callFromThread(_cancel, waiter, _REQUEST)
        raise
    finally:
        if token is not None:
            token.remove_callback(waiter)
        if record is not None:
            record.waiting_on = None
            record.wait_count += 1
            record.wait_s += perf_counter() - started
    return _outcome(waiter, x, timeout, token.reason if token is not None else "")


def _already_done(x: Any) -> bool:
    """True for a plain value, or a Deferred that has fired with nothing chained to it.

    Neither needs the reactor: a fired Deferred with no callbacks pending holds its
    result and nothing else will touch it, so the app thread may take it directly and
    skip the two thread wake-ups of a round trip. Called in an app thread.
    """
    if isinstance(x, Deferred):
        # Fired and not paused means every callback has run (a paused one waits on
        # another Deferred); the result is final.
        return bool(x.called and not x.paused)
    return not callable(x) and not iscoroutine(x)


def _take_result(x: Any, record: Any) -> Any:
    """The result of an _already_done x, raised if it is a failure. Called in an app thread."""
    token = record.cancel if record is not None else None
    if token is not None and token.is_set():
        _discard_unstarted(x, None)
        raise RequestCancelled(f"request cancelled ({token.reason}) before treadle.wait")
    if record is not None:
        record.wait_count += 1
    if not isinstance(x, Deferred):
        return x
    result = x.result
    if isinstance(result, Failure):
        x.addErrback(lambda _failure: None)  # consumed here: no "Unhandled error" later
        error = cast(BaseException, result.value)
        if result.tb is not None:
            error = error.with_traceback(result.tb)
        raise error
    x.result = None  # consumed, as a callback would
    return result


def _outcome(waiter: _Waiter, x: Any, timeout: float | None, reason: str) -> Any:
    """Return the waiter's result or raise what ended it. Called in an app thread."""
    result = waiter.result
    waiter.result = None
    if waiter.cancelled is not None:
        what = _describe(x, None)
        if waiter.cancelled == _TIMEOUT:
            raise WaitTimeout(f"treadle.wait gave up after {timeout}s on {what}")
        if waiter.cancelled == _SHUTDOWN:
            raise RequestCancelled(f"the treadle server stopped during a wait on {what}")
        raise RequestCancelled(f"request cancelled ({reason}) while waiting on {what}")
    if isinstance(result, Failure):
        error = cast(BaseException, result.value)
        if result.tb is not None:
            error = error.with_traceback(result.tb)
        raise error
    return result


def _start(waiter: _Waiter, x: Any, args: tuple[Any, ...] | None, kwargs: dict[str, Any]) -> None:
    """Call or start ``x`` and hook the waiter to its Deferred. Called in the reactor thread."""
    if waiter.released or waiter.installed is not _installed:
        # Cancelled before the reactor got here, or the server stopped meanwhile.
        if iscoroutine(x):
            x.close()
        elif isinstance(x, Deferred):
            _cancel_deferred(x)
        if not waiter.released:
            waiter.cancelled = _SHUTDOWN
            _finish(waiter, None)
        return
    if args is not None or (callable(x) and not isinstance(x, Deferred)):
        try:
            x = x(*(args or ()), **kwargs)
        except BaseException:  # noqa: BLE001 - re-raised in the app thread by _outcome
            _finish(waiter, Failure())  # type: ignore[no-untyped-call]
            return
    if iscoroutine(x):
        x = Deferred.fromCoroutine(x)
    if isinstance(x, Deferred):
        waiter.deferred = x
        _pending.add(waiter)
        x.addBoth(_done, waiter)
    else:
        _finish(waiter, x)


def _done(result: Any, waiter: _Waiter) -> None:
    """The waited-on Deferred fired. Called in the reactor thread."""
    _finish(waiter, result)
    # None: the failure, if any, is now the app thread's to raise, not an unhandled error.


def _finish(waiter: _Waiter, result: Any) -> None:
    """Hand ``result`` to the app thread, once. Called in the reactor thread."""
    if waiter.released:
        return
    waiter.released = True
    waiter.result = result
    waiter.deferred = None
    _pending.discard(waiter)
    waiter.lock.release()


def _cancel(waiter: _Waiter, why: str) -> None:
    """End a wait early: cancel its Deferred (its canceller runs now), wake the app thread.

    A result that arrived before this ran still wins. Called in the reactor thread.
    """
    if waiter.released:
        return
    waiter.cancelled = why
    deferred = waiter.deferred
    if deferred is not None:
        try:
            deferred.cancel()  # fires _done with CancelledError unless the coroutine ignores it
        except Exception:
            # The Deferred's canceller raised. The waiting thread is released all the same
            # (and whoever cancelled, such as a connection being torn down, carries on).
            log.exception(
                "the canceller of %s raised; the wait ends anyway", _describe(deferred, None)
            )
    _finish(waiter, None)


def _discard_unstarted(x: Any, reactor: _ThreadsReactor | None) -> None:
    """Dispose of work that will not be waited on. Called in an app or the reactor thread.

    A coroutine is closed (no "never awaited" warning); a Deferred is cancelled in the
    reactor thread when ``reactor`` is given (without one it is left alone: we may be in
    the reactor thread already, or no reactor runs).
    """
    if iscoroutine(x):
        x.close()
    elif isinstance(x, Deferred) and reactor is not None:
        reactor.callFromThread(_cancel_deferred, x)


def _cancel_deferred(deferred: Deferred[Any]) -> None:
    """Cancel a Deferred nobody waits on and drop its result. Called in the reactor thread."""
    deferred.addErrback(lambda _failure: None)
    try:
        deferred.cancel()
    except Exception:
        log.exception("the canceller of %s raised", _describe(deferred, None))


def _describe(x: Any, args: tuple[Any, ...] | None) -> str:
    """A short, cheap label for what a wait is on (no repr of results). Called in any thread."""
    if isinstance(x, Deferred):
        return f"Deferred at {id(x):#x}"
    name = getattr(x, "__qualname__", None) or type(x).__name__
    if iscoroutine(x):
        return f"coroutine {name}"
    if args is not None or callable(x):
        return f"{name}()"
    return name
