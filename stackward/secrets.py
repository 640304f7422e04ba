"""Secret values stackward must never show, and the one scrubber every output goes through.

Specs reference secrets by variable name; stackward reads the values only to hand them to
ZenML. The scrubber knows every value it may hold (the variables the specs reference, API
keys and tokens from the settings and the process environment) and replaces each, in every
form it could be printed in, with `(sensitive)`: as it is, line by line, JSON-escaped, and
base64-encoded (standard and URL-safe, the three alignments a value can start at inside a
longer base64 text).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from stackward.plan.changes import SENSITIVE
from stackward.spec.model import Environment

MIN_LENGTH = 6  # shorter values would match ordinary text; refusing them is the specs' job
TOKEN_VARIABLES = ("GITHUB_TOKEN", "INPUT_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")


def _base64_forms(value: bytes) -> set[str]:
    """The base64 text of `value` as it appears inside any longer base64 text."""
    forms = set()
    for shift in range(3):
        padded = b"\0" * shift + value
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(padded).decode().rstrip("=")
            skip = (shift * 4 + 2) // 3  # leading characters that depend on the bytes before
            tail = len(text) - (1 if len(padded) % 3 else 0)  # the last one, on the bytes after
            core = text[skip:tail]
            if len(core) >= MIN_LENGTH:
                forms.add(core)
    return forms


def forms_of(value: str) -> set[str]:
    """Every form of a secret value worth hiding: whole, per line, JSON-, XML- and
    HTML-escaped (JUnit and SARIF reports, the dashboard), base64."""
    out: set[str] = set()
    for part in {value, *value.splitlines()}:
        part = part.strip()
        if len(part) < MIN_LENGTH:
            continue
        out.add(part)
        out.add(json.dumps(part)[1:-1])
        xml_text = html.escape(part, quote=False)  # & < >
        out |= {xml_text, xml_text.replace('"', "&quot;"), html.escape(part)}  # XML attributes; HTML
        out |= _base64_forms(part.encode())
    return {form for form in out if len(form) >= MIN_LENGTH}


class Scrubber:
    """Replaces every known secret value in a text with (sensitive)."""

    def __init__(self, values: Iterable[str | None] = ()):
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._adding = threading.Lock()  # environments planned at once add values concurrently
        self.add(*values)

    def add(self, *values: str | None) -> None:
        with self._adding:
            for value in values:
                if value:
                    self._forms |= forms_of(value)
            longest_first = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(SENSITIVE, text)

    def data(self, value: Any) -> Any:
        """`value` with every string in it (dict keys and values, list items) scrubbed."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def __bool__(self) -> bool:
        return self._pattern is not None


def secret_variables(environments: Iterable[Environment]) -> list[str]:
    """The variables whose values are secrets: those the specs reference for ZenML API keys,
    connector and Secret values, credentials and state URLs, and the tokens stackward and GitHub Actions
    hold."""
    names: list[str | None] = [*TOKEN_VARIABLES, "STACKWARD_OPA_TOKEN", "STACKWARD_STATE_URL"]
    for env in environments:
        names.append(env.settings.zenml_api_key_env)
        names += [*env.settings.plan_credentials.values(), *env.settings.apply_credentials.values()]
        names.append(env.settings.state_url_env)
        names += env.secret_variables()
    return [name for name in dict.fromkeys(names) if name]


def secret_values(environments: Iterable[Environment]) -> list[str]:
    """The value of every secret variable that is set."""
    return [os.environ[name] for name in secret_variables(environments) if os.environ.get(name)]


class _ScrubbedStream(io.TextIOBase):
    """A text stream that scrubs what is written before passing it on."""

    def __init__(self, stream: TextIO, scrub: Scrubber):
        self._stream = stream
        self._scrub = scrub

    def write(self, text: str) -> int:
        self._stream.write(self._scrub(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def unscrubbed(stream: TextIO) -> TextIO:
    """The stream under a scrubbed one (for what must reach it as it is: `::add-mask::`)."""
    return stream._stream if isinstance(stream, _ScrubbedStream) else stream


@contextmanager
def scrubbed_output(scrub: Scrubber) -> Iterator[None]:
    """Scrub everything this process prints to stdout and stderr while inside (the log of the
    CLI and the Action); the scrubber may learn more values on the way."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ScrubbedStream(stdout, scrub), _ScrubbedStream(stderr, scrub)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
