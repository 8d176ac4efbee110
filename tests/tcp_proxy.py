"""A real TCP proxy that a test can cut and restore, to take a service away from one client.

Used to make the real MariaDB unreachable to the listener under test only (other engineers'
tests share the machine's server, which must keep running). While cut, the proxy closes
every open connection and answers each new one by closing it at once, which is what a
client sees when the server goes away (MySQL error 2013 "Lost connection").
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class TcpProxy:
    def __init__(self, *, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.refused = 0
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Drop every open connection; refuse new ones until `restore`."""
        with self._lock:
            self._cut = True
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                self.refused += 1
                with contextlib.suppress(OSError):
                    client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self.accepted += 1
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


@contextlib.contextmanager
def database_through_proxy(alias: str = "default") -> Iterator[TcpProxy]:
    """Route every new connection of `alias` (in every thread) through a TcpProxy.

    Django builds each thread's connection from the shared settings dict, so changing
    HOST/PORT there moves all later connections; the current thread's is closed so that it
    reconnects through the proxy too. Restored (and reconnected directly) on exit.
    """
    from django.db import connections

    settings_dict = connections.settings[alias]
    host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT") or 3306
    proxy = TcpProxy(target_host="127.0.0.1" if host == "localhost" else host, target_port=int(port))
    connections[alias].close()
    settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(proxy.port)
    try:
        yield proxy
    finally:
        proxy.restore()
        connections[alias].close()
        settings_dict["HOST"], settings_dict["PORT"] = host, port
        proxy.close()
