"""treadle as a Twisted service: nothing starts before startService (twistd forks first)."""

from __future__ import annotations

import threading

from twisted.application.service import MultiService
from twisted.internet.testing import MemoryReactorClock

from tests.apps.hello import app
from treadle.service import TreadleService


class Reactor(MemoryReactorClock):
    """MemoryReactorClock plus callFromThread (run at once: these tests send no requests)."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


def pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "-worker-" in t.name]


def test_construction_starts_no_threads_and_binds_nothing() -> None:
    reactor = Reactor()
    before = pool_threads()
    service = TreadleService(app, reactor=reactor, threads=3, bind=["tcp:0:interface=127.0.0.1"])
    parent = MultiService()
    service.setServiceParent(parent)
    assert pool_threads() == before
    assert reactor.tcpServers == []


def test_start_listens_and_starts_the_pool_then_stop_joins_it() -> None:
    reactor = Reactor()
    before = len(pool_threads())
    service = TreadleService(app, reactor=reactor, threads=3, bind=["tcp:8123:interface=127.0.0.1"])
    parent = MultiService()
    service.setServiceParent(parent)
    parent.startService()
    addresses: list[list[str]] = []
    service.ready.addCallback(addresses.append)
    # (MemoryReactor's fake port reports 0.0.0.0; the interface asked for is checked below.)
    assert len(addresses) == 1 and addresses[0][0].endswith(":8123")
    assert len(pool_threads()) == before + 3
    port, _factory, backlog, interface = reactor.tcpServers[0]
    assert (port, backlog, interface) == (8123, 2048, "127.0.0.1")
    stopped: list[object] = []
    parent.stopService().addCallback(stopped.append)
    assert stopped, "stopService completes when nothing is in flight"
    assert len(pool_threads()) == before
