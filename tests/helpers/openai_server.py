"""A small OpenAI-compatible server for tests, on 127.0.0.1 in a thread. Its completions are
canned and deterministic (compute is not emulated): "positive" when the text after the last
"Review:" holds a positive word, else "negative". ``fail`` lists statuses to answer first."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POSITIVE = {"great", "good", "love", "excellent", "happy", "fast"}


class FakeOpenAI:
    def __init__(self, fail: list[int] | None = None):
        self.fail = list(fail or [])
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.auth.append(self.headers.get("Authorization"))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if owner.fail:
                    code = owner.fail.pop(0)
                    self.send_response(code)
                    if code == 429:
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                prompt = body["messages"][-1]["content"]
                tail = prompt.rsplit("Review:", 1)[-1].lower().split()
                answer = "positive" if POSITIVE & set(tail) else "negative"
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": f" {answer}"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
