"""A second machine inside this one, for tests of workers that share no disk with the
submitter: its own network namespace, joined to ours by a veth pair, and a private mount
namespace per process in which the folders we name are hidden behind an empty tmpfs.

Our services stay bound to loopback: a :class:`Relay` on our end of the pair forwards
one port each to them, so the other host reaches exactly the services we relay and
nothing else (no route leads anywhere further). Needs root and ``ip``; callers skip
with :func:`prerequisites.unavailable` when :func:`namespaces_problem` says why not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path


def namespaces_problem() -> str | None:
    """Why this machine cannot make a second host, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "network and mount namespaces need root"
    for tool in ("ip", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed (iproute2 / util-linux)"
    probe = f"ubprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Relay:
    """Forwards every TCP connection made to ``listen`` on to ``target``, both ways."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.address = self.server.getsockname()[:2]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            # Half-close so the other direction finishes what it is sending.
            for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
                with contextlib.suppress(OSError):
                    sock.shutdown(how)

    def close(self) -> None:
        self._closed.set()
        self.server.close()


class OtherHost:
    """Host B: a network namespace whose only link leads to our end of a veth pair.

    ``ours`` / ``theirs`` are the pair's two addresses. :meth:`reach` relays one of our
    loopback ports to ``ours`` and returns the address B uses for it; :meth:`command`
    wraps an argv so that it runs on B with ``hidden`` folders invisible.
    """

    def __init__(self) -> None:
        pid = os.getpid()
        self.name = f"ub{pid}"
        #: B's host name (its own UTS namespace), as its workers name themselves.
        self.hostname = "host-b"
        # A /30 per test process, far from the usual private ranges.
        block = 4 * (pid % 60)
        self.ours, self.theirs = f"10.213.77.{block + 1}", f"10.213.77.{block + 2}"
        self._ours_link, self._their_link = f"ua{pid}", f"ub{pid}"
        self.relays: list[Relay] = []
        steps = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self._ours_link, "type", "veth", "peer", "name",
             self._their_link, "netns", self.name],
            ["ip", "addr", "add", f"{self.ours}/30", "dev", self._ours_link],
            ["ip", "link", "set", self._ours_link, "up"],
            ["ip", "-n", self.name, "addr", "add", f"{self.theirs}/30", "dev", self._their_link],
            ["ip", "-n", self.name, "link", "set", self._their_link, "up"],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
        ]  # fmt: skip
        try:
            for step in steps:
                subprocess.run(step, check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            self.close()
            raise RuntimeError(f"{' '.join(exc.cmd)}: {exc.stderr.strip()}") from None

    def reach(self, port: int) -> tuple[str, int]:
        """Make our ``127.0.0.1:port`` reachable from B; returns B's address for it."""
        relay = Relay((self.ours, 0), ("127.0.0.1", port))
        self.relays.append(relay)
        return relay.address

    def command(self, argv: list[str], hidden: list[Path]) -> list[str]:
        """``argv`` run on B as :attr:`hostname`, in a private mount namespace with
        ``hidden`` covered by empty tmpfs mounts (so B sees none of what we wrote there).
        ``exec`` all the way: the process we start is the program, and stopping it stops
        it."""
        steps = [f"hostname {self.hostname}"]
        steps += [f"mount -t tmpfs -o size=1m hidden {_quote(p)}" for p in hidden]
        script = " && ".join([*steps, 'exec "$@"'])
        return ["ip", "netns", "exec", self.name, "unshare", "--mount", "--uts",
                "--propagation", "private", "sh", "-c", script, "sh", *argv]  # fmt: skip

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
        subprocess.run(["ip", "link", "del", self._ours_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def _quote(path: Path) -> str:
    text = str(path)
    return "'" + text.replace("'", "'\\''") + "'"
