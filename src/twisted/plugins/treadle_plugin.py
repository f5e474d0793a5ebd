"""The ``treadle`` subcommand of twistd and twist (found by twisted.plugin.getPlugins).

Only names the plugin: everything else is in treadle.twistd, imported when the command
runs, so ``twistd --help`` stays quick and no app is imported while plugins are listed.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class TreadleServiceMaker:
    tapname = "treadle"
    description = "Serve a WSGI app with treadle (a thread-pool WSGI server on Twisted)."

    @property
    def options(self) -> Any:
        from treadle.twistd import Options

        return Options

    def makeService(self, options: Any) -> Any:
        from treadle.twistd import make_service

        return make_service(options)


treadle = TreadleServiceMaker()
