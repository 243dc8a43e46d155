"""A real HTTP endpoint for http-sink tests: records every POST, can answer
errors, or go down (stop listening) and come back on the same port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import free_port


def _holds(doc: Any, ids: set[int]) -> bool:
    events = doc if isinstance(doc, list) else [doc]
    return any(isinstance(e, dict) and (e.get("after") or {}).get("id") in ids for e in events)


class RecordingServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/ingest"
        self.posts: list[dict[str, Any]] = []  # {"path", "headers", "body"}
        self.lock = threading.Lock()
        self.fail_status: int | None = None  # answer this status instead of 200
        self.fail_every: int = 0  # flapping: fail every N-th request
        self.refuse_ids: set[int] = set()  # answer 400 to a body holding an event with one of these after.id
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> RecordingServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # the status line and the body go out as two writes: with Nagle on, the second waits
            # for the client's delayed ACK, 40 ms a request on a keep-alive connection
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(n)
                doc = json.loads(body)
                with outer.lock:
                    outer.requests += 1
                    fail = outer.fail_status is not None or (
                        outer.fail_every and outer.requests % outer.fail_every == 0
                    )
                    refused = bool(outer.refuse_ids) and _holds(doc, outer.refuse_ids)
                    if not fail and not refused:
                        outer.posts.append({"path": self.path, "headers": dict(self.headers), "body": doc})
                status = (outer.fail_status or 503) if fail else 400 if refused else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ---------------------------------------------------------------- views
    def batches(self) -> list[list[dict[str, Any]]]:
        with self.lock:
            return [p["body"] for p in self.posts]

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for b in self.batches():
            out.extend(b if isinstance(b, list) else [b])
        return out

    def ids(self) -> list[int]:
        return [e["after"]["id"] for e in self.events()]
