"""The one-process server's --pid-file, --user, --group and --umask (no supervisor).

Composition layer, called by cli.py in the main thread before the app is imported.
With --user, --group or --umask the process binds its tcp/unix listeners itself first
(as the supervisor does), listens on them by descriptor, then drops privileges, so the
app is never imported as root; systemd: binds (socket activation) are taken the same
way. Other binds (ssl:) are opened by the reactor afterwards, as the new user. It never
runs a reactor and never imports the app.
"""

from __future__ import annotations

from treadle import listen
from treadle.config import Config
from treadle.errors import ConfigError
from treadle.supervisor import pidfile, privileges
from treadle.supervisor.sockets import Held, hold, release


def prepare(config: Config) -> tuple[Config, list[Held]]:
    """Claim the pid file, bind and drop privileges: the config to serve and what we hold."""
    process = config.process
    privileges.set_umask(process.umask)
    if process.pid_file:
        pidfile.check(process.pid_file)
    activated = any(
        listen.split_description(listen.normalize(bind))[0] == "systemd"
        for bind in config.listen.bind
    )
    plain = process.user is None and process.group is None and process.umask is None
    if plain and not activated:
        return config, []
    privileges.resolve(process.user, process.group)  # a typo fails before binding
    held: list[Held] = []
    binds: list[str] = []
    try:
        for bind in config.listen.bind:
            kept = hold(bind, config.listen.backlog, privileges.socket_mode(process.umask))
            if kept is None:
                binds.append(bind)
                continue
            held.append(kept)
            binds.append(kept.child_bind)
        privileges.drop(process.user, process.group)
    except OSError as error:
        release(held)
        raise ConfigError(f"cannot listen: {error}") from None
    except ConfigError:
        release(held)
        raise
    for kept in held:
        # listen.py's fd: endpoint takes the descriptor over and closes it once adopted;
        # we keep only the unix path, to remove at exit.
        kept.sock.detach()
    return config.replace(bind=tuple(binds)), held


def prepare_without_sockets(config: Config) -> None:
    """``treadle mongrel2``'s one process, which listens on nothing: set the umask, claim
    the pid file and drop privileges (ConfigError when one cannot be done)."""
    process = config.process
    privileges.set_umask(process.umask)
    if process.pid_file:
        pidfile.check(process.pid_file)
    privileges.resolve(process.user, process.group)
    try:
        privileges.drop(process.user, process.group)
    except OSError as error:
        raise ConfigError(f"cannot switch user: {error}") from None


def started(config: Config) -> None:
    """Once listening."""
    if config.process.pid_file:
        pidfile.write(config.process.pid_file)


def finish(config: Config, held: list[Held]) -> None:
    """At exit: close what we held, remove the socket files and the pid file."""
    release(held)
    if config.process.pid_file:
        pidfile.remove(config.process.pid_file)
