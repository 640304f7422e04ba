"""A local stand-in for an OPA server (no OPA binary can be installed here).

It answers the part of OPA's documented REST API that stackward uses, in OPA's shapes:
- PUT /v1/policies/{id} with Rego text: 200 `{}`, or 400 `{"code": "invalid_parameter",
  "message": ..., "errors": [{"code", "message", "location": {"file", "row", "col"}}]}`;
- POST /v1/data/{path} with `{"input": ...}`: 200 `{"result": value}`, or `{}` when undefined;
- GET /health: 200 `{}`; a bearer token, when set, else 401 `{"code": "unauthorized", ...}`.
Rego is evaluated by regorus underneath, so the stand-in checks our client, not OPA itself.
"""

from __future__ import annotations

import gc
import json
import re
import threading
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer

import regorus

from stackward.policy.embedded import _in_load_order
from stackward.policy.sources import PolicyFile

_WHERE = re.compile(r"-->\s*(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)")
_ERROR = re.compile(r"^error:\s*(?P<msg>.+)$", re.MULTILINE)


class OpaStandIn:
    def __init__(self, token: str | None = None):
        self.token = token
        self.policies: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        # One thread serves every request: regorus engines must be dropped where they were made.
        self._server = HTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OpaStandIn:
        # regorus engines must be freed on the thread that made them. Collect pending garbage
        # here, and keep the collector from running on the serving thread while it serves.
        gc.collect()
        gc.disable()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        gc.enable()
        gc.collect()

    def _engine(self, policies: dict[str, str]) -> regorus.Engine:
        # Loaded in the embedded engine's order, which works around regorus resolving a
        # split package's imports from its first file only (real OPA has no such limit).
        engine = regorus.Engine()
        for policy in _in_load_order([PolicyFile(i, t) for i, t in policies.items()]):
            engine.add_policy(policy.name, policy.text)
        return engine

    def compile_errors(self, policy_id: str, text: str) -> list[dict]:
        try:
            engine = self._engine({**self.policies, policy_id: text})
            engine.set_input_json("{}")
            engine.eval_query_as_json("data")  # compiles every module, as OPA does on upload
        except RuntimeError as exc:
            # regorus engines must be dropped on the thread that made them: free the frames now.
            traceback.clear_frames(exc.__traceback__)
            message = str(exc).split("Stack backtrace:")[0]
            where, error = _WHERE.search(message), _ERROR.search(message)
            code = "rego_parse_error" if "expect" in message else "rego_compile_error"
            return [
                {
                    "code": code,
                    "message": error.group("msg") if error else message.strip(),
                    "location": {
                        "file": where.group("file") if where else policy_id,
                        "row": int(where.group("line")) if where else 0,
                        "col": int(where.group("col")) if where else 0,
                    },
                }
            ]
        return []

    def evaluate(self, path: str, document: dict) -> dict:
        engine = self._engine(self.policies)
        engine.set_input_json(json.dumps(document))
        raw = json.loads(engine.eval_query_as_json("data" + "".join(f".{p}" for p in path.split("/") if p)))
        results = raw.get("result") or []
        return {"result": results[0]["expressions"][0]["value"]} if results else {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorised(self) -> bool:
                if standin.token and self.headers.get("Authorization") != f"Bearer {standin.token}":
                    self.reply(401, {"code": "unauthorized", "message": "missing or invalid bearer token"})
                    return False
                return True

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                standin.requests.append(("GET", self.path))
                if self.path == "/health":
                    self.reply(200, {})
                elif self.authorised():
                    self.reply(404, {"code": "resource_not_found", "message": "not found"})

            def do_PUT(self) -> None:
                standin.requests.append(("PUT", self.path))
                if not self.authorised():
                    return
                policy_id = self.path.removeprefix("/v1/policies/")
                text = self.body().decode()
                with standin._lock:
                    errors = standin.compile_errors(policy_id, text)
                    if errors:
                        self.reply(
                            400,
                            {
                                "code": "invalid_parameter",
                                "message": "error(s) occurred while compiling module(s)",
                                "errors": errors,
                            },
                        )
                        return
                    standin.policies[policy_id] = text
                self.reply(200, {})

            def do_POST(self) -> None:
                standin.requests.append(("POST", self.path))
                if not self.authorised():
                    return
                if not self.path.startswith("/v1/data"):
                    self.reply(404, {"code": "resource_not_found", "message": "not found"})
                    return
                document = json.loads(self.body() or b"{}").get("input", {})
                with standin._lock:
                    try:
                        answer = standin.evaluate(self.path.removeprefix("/v1/data"), document)
                    except RuntimeError as exc:
                        self.reply(500, {"code": "internal_error", "message": str(exc).split("Stack")[0]})
                        return
                self.reply(200, answer)

        return Handler
