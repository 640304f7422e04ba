"""The scrubber: a secret value is hidden in every form it could be printed in."""

from __future__ import annotations

import base64
import html
import io
import json

from junitparser import Failure, JUnitXml, TestCase, TestSuite

from stackward.secrets import Scrubber

KEY = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n"}'
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"


def test_a_value_is_hidden_as_it_is_and_json_escaped():
    scrub = Scrubber(["canary-secret-value-1"])
    assert scrub("token=canary-secret-value-1;") == "token=(sensitive);"
    scrub.add(KEY)
    assert KEY not in scrub(f"plan: {KEY}")
    assert json.dumps(KEY)[1:-1] not in scrub(json.dumps({"value": KEY}))


def test_a_multi_line_value_is_hidden_line_by_line():
    scrub = Scrubber([PEM])
    printed = scrub("line 2 alone: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC and the last BKcwggSjAgEAAoIBAQC7")
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in printed and "BKcwggSjAgEAAoIBAQC7" not in printed


def test_a_value_is_hidden_inside_longer_base64_at_any_offset():
    secret = "canary-secret-value-2"
    scrub = Scrubber([secret])
    for prefix in ("", "a", "ab", "abc", "some context: "):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(f"{prefix}{secret} and more".encode()).decode()
            scrubbed = scrub(encoded)
            assert scrubbed != encoded, (prefix, encoded)
            assert "(sensitive)" in scrubbed


def test_short_values_and_empty_scrubbers_leave_text_alone():
    scrub = Scrubber(["abc", "", None])
    assert not scrub
    assert scrub("abc abc") == "abc abc"


def test_a_value_is_hidden_xml_and_html_escaped():
    """JUnit XML (junitparser) escapes what it writes; the dashboard escapes HTML."""
    secret = "canary<&>\"'-value-3"
    scrub = Scrubber([secret])
    case = TestCase("zenml.config", "stackward.dev")
    failure = Failure(f"got {secret}", "zenml.config")
    failure.text = f"value: {secret}"
    case.result = [failure]
    report = JUnitXml("stackward")
    suite = TestSuite("dev")
    suite.add_testcase(case)
    report.add_testsuite(suite)
    out = io.BytesIO()
    report.write(out)
    printed = out.getvalue().decode()
    assert "canary" in printed and secret not in printed  # escaped in the XML
    assert "canary" not in scrub(printed)
    assert "canary" not in scrub(f"<td title='{html.escape(secret)}'>{html.escape(secret)}</td>")
