"""A local stand-in for an OPA server (no OPA binary can be installed here).

It answers the part of OPA's documented REST API that stackward uses, in OPA's shapes:
- PUT /v1/policies/{id} with Rego text: 200 `{}`, or 400 `{"code": "invalid_parameter",
  "message": ..., "errors": [{"code", "message", "location": {"file", "row", "col"}}]}`;
- PUT /v1/data/{path} with a JSON value: 204, the value stored at that path of `data`;
- POST /v1/data/{path} with `{"input": ...}`: 200 `{"result": value}`, or `{}` when undefined;
- GET /health: 200 `{}`; a bearer token, when set, else 401 `{"code": "unauthorized", ...}`.

Like OPA 1.x, it parses every uploaded module with the server's Rego version, not per
request: Rego v1 by default (a v0 module is refused with "`if` keyword is required before
rule body"), or v0 when started as `opa run --v0-compatible` (`v0_compatible=True`), where a
module importing `rego.v1` is read as v1 (OPA's server.go parses PUT /v1/policies bodies with
the runtime's parser options). Rego is evaluated by regorus underneath, with OPA's sprintf
(stackward.policy.gofmt), so the stand-in checks our client, not OPA itself.
"""

from __future__ import annotations

import gc
import json
import threading
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import unquote

from stackward.diagnostics import Diagnostic, Location
from stackward.policy.embedded import EmbeddedEngine
from stackward.policy.engine import PolicyEvaluationError
from stackward.policy.sources import PolicyFile


class CompileError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


class OpaStandIn:
    def __init__(self, token: str | None = None, *, v0_compatible: bool = False):
        self.token = token
        self.v0_compatible = v0_compatible
        self.policies: dict[str, str] = {}
        self.data: dict = {}
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

    def _engine(self, policies: dict[str, str], namespace: str = "*") -> EmbeddedEngine:
        """The policies parsed as this server's Rego version, with its data. stackward's embedded
        engine underneath: it queries rule by rule, around regorus's split-package bug."""
        engine = EmbeddedEngine(namespace, rego_version=0 if self.v0_compatible else 1)
        found = engine.load([PolicyFile(i, t) for i, t in policies.items()])
        if found:
            raise CompileError(found)
        if self.data:
            engine._engine.add_data(self.data)
        return engine

    def put_data(self, path: str, value: object) -> None:
        parts = [unquote(p) for p in path.split("/") if p]
        if not parts:
            self.data = value if isinstance(value, dict) else {}
            return
        node = self.data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def compile_errors(self, policy_id: str, text: str) -> list[dict]:
        try:
            engine = self._engine({**self.policies, policy_id: text})
            engine._query("data")  # compiles every module, as OPA does on upload
        except (CompileError, PolicyEvaluationError) as exc:
            # regorus engines must be dropped on the thread that made them: free the frames now.
            traceback.clear_frames(exc.__traceback__)
            out = []
            for found in exc.diagnostics:
                message = found.message.removeprefix("policy error: ")
                location = found.location or Location(policy_id)
                out.append(
                    {
                        "code": "rego_parse_error"
                        if "expect" in message or "keyword" in message
                        else "rego_compile_error",
                        "message": message,
                        "location": {"file": location.file, "row": location.line, "col": location.column},
                    }
                )
            return out
        return []

    def evaluate(self, path: str, document: dict) -> dict:
        namespace = ".".join(unquote(p) for p in path.split("/") if p)
        engine = self._engine(self.policies, namespace or "*")
        values = engine.evaluate(document)
        if not namespace:
            return {"result": {**self.data, **values}}
        return {"result": values[namespace]} if namespace in values else {}

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
                if self.path.startswith("/v1/data"):
                    value = json.loads(self.body() or b"null")
                    with standin._lock:
                        standin.put_data(self.path.removeprefix("/v1/data"), value)
                    self.send_response(204)
                    self.end_headers()
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
                    except PolicyEvaluationError as exc:
                        traceback.clear_frames(exc.__traceback__)
                        self.reply(500, {"code": "internal_error", "message": exc.diagnostics[0].message})
                        return
                self.reply(200, answer)

        return Handler
