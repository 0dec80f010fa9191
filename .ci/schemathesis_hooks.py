"""Schemathesis hooks for .ci/schemathesis.sh.

They change what is sent, never what is checked, and only where the OpenAPI document states a
rule in words that JSON Schema cannot express:

- `Idempotency-Key` is "a unique key per request": a key reused with another body is refused
  (422 `idempotency_key_reused`, as the IETF draft says), so every generated key is made
  unique. The replay itself is covered by the integration tests.
- `complete_at` must be in the future: a well-formed time in the past is moved a year ahead.
- `cron` must be an expression the `cron` crate reads: a string is replaced by one of a few
  valid expressions (a non-string stays, so the type check is still fuzzed).
- The fuzzer must not lock itself out: a change to the very key it authenticates with
  (HOOKSIGN_ST_KEY_ID: revoke, roll, deactivate) is aimed at an unknown key id instead
  (404), since every later request would otherwise only prove that revocation works.
"""

import datetime
import os
import re
import uuid

import schemathesis

KEY_ID = os.environ.get("HOOKSIGN_ST_KEY_ID", "")
# The same shape as the key id, but no key has it.
UNKNOWN_KEY_ID = "key_" + "0" * 26
PRINTABLE_KEY = re.compile(r"^[!-~]{1,255}$")
# Rare fire times, so the scheduler does not rotate secrets under the fuzzer's feet.
CRONS = ["0 0 3 1 * *", "0 30 4 * * Sun", "0 0 0 1 1 *", "0 15 10 15 * *"]


def _header(headers, name):
    for key in list(headers or {}):
        if key.lower() == name.lower():
            return key
    return None


@schemathesis.hook
def before_call(context, case, kwargs):
    key = _header(case.headers, "Idempotency-Key")
    if key is not None and isinstance(case.headers[key], str) and PRINTABLE_KEY.match(case.headers[key]):
        case.headers[key] = uuid.uuid4().hex

    if isinstance(case.body, dict):
        complete_at = case.body.get("complete_at")
        if isinstance(complete_at, str):
            try:
                at = datetime.datetime.fromisoformat(complete_at.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                at = None
            if at is not None and at.tzinfo is not None:
                now = datetime.datetime.now(datetime.timezone.utc)
                if at <= now + datetime.timedelta(minutes=1):
                    future = now + datetime.timedelta(days=365)
                    case.body["complete_at"] = future.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        cron = case.body.get("cron")
        if isinstance(cron, str) and cron not in CRONS:
            case.body["cron"] = CRONS[sum(cron.encode()) % len(CRONS)]

    path = case.operation.path
    if (
        KEY_ID
        and path.startswith("/v1/api-keys/{id}")
        and case.method.upper() != "GET"
        and str((case.path_parameters or {}).get("id", "")).upper() == KEY_ID.upper()
    ):
        case.path_parameters["id"] = UNKNOWN_KEY_ID
