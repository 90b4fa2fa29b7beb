"""``sct dashboards push`` against a stand-in for Grafana's HTTP API.

No Grafana runs on this machine (it is not in Debian, nor on PyPI), so this checks what the
command sends and how it reads Grafana's answers, as Grafana's API documents them: folder
by uid, datasource by uid, ``POST /api/dashboards/db`` with ``overwrite``. That a real
Grafana accepts these boards is NOT checked here (see the README).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dashboards import DATASOURCE_UID
from dashboards.build import render
from dashboards.push import FOLDER_UID, PushError, push


class FakeGrafana(ThreadingHTTPServer):
    token = "test-token-not-a-secret"   # not a secret: this server lives for one test

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.folders: set[str] = set()
        self.datasources: set[str] = set()
        self.dashboards: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((method, self.path, body))
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._answer(401, {"message": "invalid API key"})
        path = self.path
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            if uid in self.server.folders:
                return self._answer(200, {"uid": uid})
            return self._answer(404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            assert body is not None
            self.server.folders.add(body["uid"])
            return self._answer(200, {"uid": body["uid"], "title": body["title"]})
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            if uid in self.server.datasources:
                return self._answer(200, {"uid": uid})
            return self._answer(404, {"message": "data source not found"})
        if method == "POST" and path == "/api/dashboards/db":
            assert body is not None
            if body["folderUid"] not in self.server.folders:
                return self._answer(400, {"message": "folder not found"})
            uid = body["dashboard"]["uid"]
            if uid in self.server.dashboards and not body.get("overwrite"):
                return self._answer(412, {"message": "version-mismatch"})
            self.server.dashboards[uid] = body
            return self._answer(200, {"status": "success", "uid": uid, "url": f"/d/{uid}"})
        return self._answer(404, {"message": "not found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_push_creates_the_folder_and_every_board_and_pushing_again_overwrites(
        grafana: FakeGrafana) -> None:
    boards = render()
    first = push(grafana.url, grafana.token, boards)
    assert first.folder_created and first.datasource_missing
    uids = {json.loads(text)["uid"] for text in boards.values()}
    assert set(grafana.dashboards) == uids and len(first.dashboards) == len(boards) == 8
    for body in grafana.dashboards.values():
        assert body["overwrite"] is True and body["folderUid"] == FOLDER_UID
        assert "id" not in body["dashboard"]
    grafana.datasources.add(DATASOURCE_UID)
    second = push(grafana.url, grafana.token, boards)
    assert not second.folder_created and not second.datasource_missing
    assert sum(1 for m, p, _ in grafana.requests if p == "/api/folders") == 1


def test_a_wrong_token_is_a_clear_error(grafana: FakeGrafana) -> None:
    with pytest.raises(PushError, match=r"HTTP 401.*token"):
        push(grafana.url, "wrong", render())
    assert grafana.dashboards == {}


def test_nobody_listening_is_a_clear_error() -> None:
    server = FakeGrafana()   # bound, then closed: the port is free and nobody answers
    url = server.url
    server.server_close()
    with pytest.raises(PushError, match="could not push"):
        push(url, "t", render(), timeout=2)


def test_the_cli_reads_the_token_from_the_environment(grafana: FakeGrafana) -> None:
    run = subprocess.run([sys.executable, "-m", "collector", "dashboards", "push", "--url",
                          grafana.url], capture_output=True, text=True, timeout=60,
                         env={"GRAFANA_TOKEN": grafana.token, "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("pushed /d/") == 8
    assert "no datasource with uid 'sct-influxdb'" in run.stderr
    missing = subprocess.run([sys.executable, "-m", "collector", "dashboards", "push", "--url",
                              grafana.url], capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode == 2 and "GRAFANA_TOKEN" in missing.stderr
