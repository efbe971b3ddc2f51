"""A TCP proxy for fault tests: forwards to a server, and can freeze or cut its connections.

``freeze()`` stops forwarding without closing anything: to the client the server is
then silent on an open socket, as behind a half-open connection (lost NAT state, a
dead peer) or a hung server. ``thaw()`` resumes; ``cut()`` closes every connection
(new ones are still accepted and forwarded). Threads, so both twins' tests use it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class TcpProxy:
    """Listens on 127.0.0.1 (``port``) and forwards each connection to ``target``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # accept() wakes to see close()
        self.port = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="tcp-proxy")]
        self._threads[0].start()

    def freeze(self) -> None:
        """Stop forwarding in both directions; every socket stays open."""
        self._frozen.set()

    def thaw(self) -> None:
        """Forward again what waited meanwhile."""
        self._frozen.clear()

    def cut(self) -> None:
        """Close every connection now (the client sees the server go away)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        """Stop accepting and close everything."""
        self._closed.set()
        self._frozen.clear()
        self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
                self.accepted += 1
            thread = threading.Thread(
                target=self._pump, args=(client, server), daemon=True, name="tcp-proxy-pump"
            )
            self._threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self._closed.is_set():
                if self._frozen.is_set():
                    self._frozen_wait()
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # cut or closed under us
            return
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.close()

    def _frozen_wait(self) -> None:
        # Nothing is read: what the client sends stays in the kernel's buffers, acked.
        self._closed.wait(0.05)
