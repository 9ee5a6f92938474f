"""A loopback TCP relay whose open connections a test can cut, as a network change does.

A browser's `EventSource` reconnects by itself only when its connection fails; a server has
no polite way to make that happen mid-run, a relay in between does.
"""

import contextlib
import socket
import threading
from types import TracebackType


class CutProxy:
    """`with CutProxy(port) as proxy:` relays `proxy.url` to 127.0.0.1:`port`; `cut()` drops
    every connection open now and keeps accepting new ones."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="cut-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> "CutProxy":
        self._acceptor.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            dropped, self._open = self._open, []
        for sock in dropped:
            _close(sock)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _close(self._listener)  # a shut-down listener wakes the blocked accept()
        self.cut()
        self._acceptor.join(timeout=5)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass  # cut, or the other side went away
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already shut
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
