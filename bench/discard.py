"""An HTTP endpoint that answers as InfluxDB 1.x does and throws the writes away: the sink for
measuring the collector alone (decode, detect, encode, batch, post), without InfluxDB's own
cost in the figure. It counts the lines it was sent, by measurement.

It runs in the benchmark's own process (a thread a request); its CPU is not the collector's.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DiscardInflux:
    """``url`` takes ``/ping``, ``/query`` (empty results) and ``/write`` (counted, dropped)."""

    def __init__(self) -> None:
        self._counts: Counter[bytes] = Counter()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/write"):
                    sink._count(body)
                    self._answer(204, b"")
                else:
                    self._answer(200, b'{"results":[{"statement_id":0}]}')

            def do_GET(self) -> None:
                self._answer(204, b"")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _count(self, body: bytes) -> None:
        counts: Counter[bytes] = Counter()
        for line in body.split(b"\n"):
            if line:
                counts[line.split(b",", 1)[0]] += 1
        with self._lock:
            self._counts.update(counts)

    def lines(self, measurement: str) -> int:
        with self._lock:
            return self._counts[measurement.encode()]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
