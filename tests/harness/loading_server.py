"""A server that answers 503 while it "loads its weights", then serves /v1/models and
one-token chat completions: the reference for ``wait_for_model_timeout``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = json.dumps({
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}).encode()


class LoadingServer:
    """Answers 503 ("loading", echoing the request's Authorization header, as a careless
    server might) until ``ready_after_s`` has passed since its first request (not since it
    started: a client that is slow to start on a busy box still meets the loading), then serves
    /v1/models and one-token chat completions on any POST path. Records every request."""

    def __init__(self, ready_after_s: float, models_list: bool = True) -> None:
        self.ready_after_s = ready_after_s
        self.ready_at: float | None = None  # set by the first request
        clock = threading.Lock()
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                owner.seen.append((self.command, self.path, body))
                with clock:
                    if owner.ready_at is None:
                        owner.ready_at = time.monotonic() + owner.ready_after_s
                if time.monotonic() < owner.ready_at:
                    echo = self.headers.get("Authorization", "")
                    self._reply(503, json.dumps(
                        {"error": {"message": f"loading weights; you sent {echo}"}}).encode())
                elif self.command == "GET" and self.path == "/v1/models" and models_list:
                    self._reply(200, b'{"object": "list", "data": [{"id": "m"}]}')
                elif self.command == "GET" and self.path == "/":
                    self._reply(200, b'{"status": "ok"}')
                elif self.command == "POST":
                    self._reply(200, ANSWER)
                else:
                    self._reply(404, b'{"error": "no route"}')

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LoadingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
