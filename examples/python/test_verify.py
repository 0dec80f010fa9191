"""Tests for verify.py against the shared vectors in tests/vectors (every case of every file),
plus the example receiver run as a real process.

Run from this directory:  python3 -m unittest -v
"""

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

from verify import VerificationError, signing_key, verify_bolt, verify_standard

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "../../tests/vectors"

# A valid secret that signs none of the vectors.
OTHER = "0" * 64


def load(name):
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


BOLT = load("bolt-signatures.json")
STANDARD = load("standard-webhooks.json")


def body_of(case):
    return base64.b64decode(case["body_base64"])


def bolt_sign(secret, body):
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def standard_headers(case, signature):
    return {
        "webhook-id": case["webhook_id"],
        "webhook-timestamp": str(case["webhook_timestamp"]),
        "webhook-signature": signature,
    }


class VerifyErrorAssertions(unittest.TestCase):
    def assertRefused(self, code, call, *args, **kwargs):
        with self.assertRaises(VerificationError) as raised:
            call(*args, **kwargs)
        self.assertEqual(raised.exception.code, code, raised.exception.reason)
        return raised.exception


class BoltVectorTests(VerifyErrorAssertions):
    def test_vector_files_have_cases(self):
        self.assertGreater(len(BOLT["cases"]), 0)
        self.assertGreater(len(STANDARD["cases"]), 0)

    def test_active_only_headers_verify_with_the_active_secret(self):
        for case in BOLT["cases"]:
            with self.subTest(case["name"]):
                headers, body = case["headers_active_only"], body_of(case)
                self.assertEqual(verify_bolt([case["active_secret"]], headers, body), 0)
                self.assertEqual(verify_bolt([OTHER, case["active_secret"]], headers, body), 1)

    def test_during_rotation_the_old_secret_alone_accepts(self):
        for case in BOLT["cases"]:
            with self.subTest(case["name"]):
                headers, body = case["headers_during_rotation"], body_of(case)
                self.assertEqual(verify_bolt([case["active_secret"]], headers, body), 0)

    def test_during_rotation_the_new_secret_alone_accepts_the_pending_header(self):
        for case in BOLT["cases"]:
            with self.subTest(case["name"]):
                headers, body = case["headers_during_rotation"], body_of(case)
                self.assertEqual(verify_bolt([case["pending_secret"]], headers, body), 0)
                pending_only = {"X-Bolt-Hmac-Sha256-Pending": headers["X-Bolt-Hmac-Sha256-Pending"]}
                self.assertEqual(verify_bolt([case["pending_secret"]], pending_only, body), 0)

    def test_holding_old_and_new_reports_the_first_matching_secret(self):
        for case in BOLT["cases"]:
            with self.subTest(case["name"]):
                old, new = case["active_secret"], case["pending_secret"]
                headers, body = case["headers_during_rotation"], body_of(case)
                self.assertEqual(verify_bolt([old, new], headers, body), 0)
                self.assertEqual(verify_bolt([new, old], headers, body), 0)
                self.assertEqual(verify_bolt([OTHER, new], headers, body), 1)

    def test_new_secret_does_not_match_before_the_rotation_starts(self):
        for case in BOLT["cases"]:
            with self.subTest(case["name"]):
                self.assertRefused(
                    "no_match", verify_bolt,
                    [case["pending_secret"]], case["headers_active_only"], body_of(case),
                )

    def test_tampered_body_is_rejected(self):
        for case in BOLT["cases"]:
            with self.subTest(case["name"]):
                secrets = [case["active_secret"], case["pending_secret"]]
                for tampered in (body_of(case) + b" ", body_of(case)[:-1] or b"x"):
                    self.assertRefused(
                        "no_match", verify_bolt,
                        secrets, case["headers_during_rotation"], tampered,
                    )

    def test_empty_truncated_and_garbled_signatures_are_rejected(self):
        for case in BOLT["cases"]:
            with self.subTest(case["name"]):
                secrets, body = [case["active_secret"]], body_of(case)
                good = case["headers_active_only"]["X-Bolt-Hmac-Sha256"]
                for empty in ("", "   "):
                    error = self.assertRefused(
                        "missing_header", verify_bolt, secrets, {"X-Bolt-Hmac-Sha256": empty}, body,
                    )
                    self.assertEqual(error.reason, "missing signature header X-Bolt-Hmac-Sha256")
                self.assertRefused("missing_header", verify_bolt, secrets, {}, body)
                self.assertRefused("missing_header", verify_bolt, secrets, {"X-Other": good}, body)
                flipped_bit = base64.b64encode(
                    bytes([base64.b64decode(good)[0] ^ 1]) + base64.b64decode(good)[1:]
                ).decode()
                malformed = [
                    good[:43],                     # truncated
                    good[:10],
                    good.rstrip("="),              # unpadded
                    good + "A",                    # too long
                    good[:-2] + "!=",              # not base64
                    "not base64 at all!",
                    base64.b64encode(base64.b64decode(good) + b"\0").decode(),  # 33 bytes
                    base64.b64encode(base64.b64decode(good)[:31]).decode(),    # 31 bytes
                ]
                for bad in malformed:
                    error = self.assertRefused(
                        "malformed_header", verify_bolt, secrets, {"X-Bolt-Hmac-Sha256": bad}, body,
                    )
                    self.assertEqual(error.reason, "malformed header X-Bolt-Hmac-Sha256", bad)
                self.assertRefused(
                    "no_match", verify_bolt, secrets, {"X-Bolt-Hmac-Sha256": flipped_bit}, body,
                )

    def test_non_canonical_base64_is_malformed(self):
        # The last character before '=' carries 2 unused bits; a set one decodes to the same
        # bytes but is not what the daemon sends.
        body = b"{}"
        good = bolt_sign(OTHER, body)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        stray = good[:42] + alphabet[alphabet.index(good[42]) | 1] + "="
        self.assertNotEqual(stray, good)
        self.assertRefused("malformed_header", verify_bolt, [OTHER], {"X-Bolt-Hmac-Sha256": stray}, body)

    def test_a_garbled_header_does_not_hide_a_valid_one(self):
        body = b'{"a":1}'
        good = bolt_sign(OTHER, body)
        garbled_active = {"X-Bolt-Hmac-Sha256": "garbage", "X-Bolt-Hmac-Sha256-Pending": good}
        self.assertEqual(verify_bolt([OTHER], garbled_active, body), 0)
        garbled_pending = {"X-Bolt-Hmac-Sha256": good, "X-Bolt-Hmac-Sha256-Pending": "x"}
        self.assertEqual(verify_bolt([OTHER], garbled_pending, body), 0)
        error = self.assertRefused(
            "malformed_header", verify_bolt, [OTHER], {"X-Bolt-Hmac-Sha256-Pending": "%%%"}, body,
        )
        self.assertEqual(error.reason, "malformed header X-Bolt-Hmac-Sha256-Pending")

    def test_headers_are_case_insensitive_in_any_mapping(self):
        case = BOLT["cases"][1]
        secrets, body = [case["active_secret"]], body_of(case)
        value = case["headers_active_only"]["X-Bolt-Hmac-Sha256"]
        message = Message()  # what http.server hands a handler
        message["x-BOLT-hmac-SHA256"] = value
        for headers in (
            {"x-bolt-hmac-sha256": value},
            {"X-BOLT-HMAC-SHA256": f"  {value} "},
            message,
            [("X-Bolt-Hmac-Sha256", value)],
            [(b"x-bolt-hmac-sha256", value.encode())],  # ASGI raw headers
        ):
            with self.subTest(type(headers).__name__):
                self.assertEqual(verify_bolt(secrets, headers, body), 0)

    def test_body_must_be_raw_bytes(self):
        case = BOLT["cases"][1]
        headers = case["headers_active_only"]
        self.assertEqual(verify_bolt([case["active_secret"]], headers, bytearray(body_of(case))), 0)
        with self.assertRaises(TypeError):
            verify_bolt([case["active_secret"]], headers, body_of(case).decode())


class StandardVectorTests(VerifyErrorAssertions):
    def test_reference_vector_verifies_with_its_whsec_secret(self):
        ref = STANDARD["reference_vector"]
        headers = standard_headers(ref, ref["webhook_signature"])
        body = body_of(ref)
        self.assertEqual(verify_standard([ref["secret"]], headers, body, now=ref["webhook_timestamp"]), 0)
        self.assertEqual(
            verify_standard([OTHER, ref["secret"]], headers, body, now=ref["webhook_timestamp"]), 1,
        )
        # Without `now`, the current clock is used and this 2021 delivery is long stale.
        self.assertRefused("stale_timestamp", verify_standard, [ref["secret"]], headers, body)

    def test_whsec_form_is_the_same_key_as_the_hex_secret(self):
        for case in STANDARD["cases"]:
            with self.subTest(case["name"]):
                self.assertEqual(signing_key(case["active_secret_whsec"]), case["active_secret"].encode())

    def test_active_only_signature_verifies_with_hex_and_whsec_secrets(self):
        for case in STANDARD["cases"]:
            with self.subTest(case["name"]):
                headers = standard_headers(case, case["webhook_signature_active_only"])
                now = case["webhook_timestamp"]
                for secret in (case["active_secret"], case["active_secret_whsec"]):
                    self.assertEqual(verify_standard([secret], headers, body_of(case), now=now), 0)

    def test_during_rotation_old_or_new_secret_alone_accepts(self):
        for case in STANDARD["cases"]:
            with self.subTest(case["name"]):
                headers = standard_headers(case, case["webhook_signature_during_rotation"])
                body, now = body_of(case), case["webhook_timestamp"]
                for secret in (case["active_secret"], case["active_secret_whsec"], case["pending_secret"]):
                    self.assertEqual(verify_standard([secret], headers, body, now=now), 0)
                secrets = [OTHER, case["pending_secret"], case["active_secret"]]
                self.assertEqual(verify_standard(secrets, headers, body, now=now), 1)

    def test_new_secret_does_not_match_before_the_rotation_starts(self):
        for case in STANDARD["cases"]:
            with self.subTest(case["name"]):
                headers = standard_headers(case, case["webhook_signature_active_only"])
                self.assertRefused(
                    "no_match", verify_standard, [case["pending_secret"]], headers, body_of(case),
                    now=case["webhook_timestamp"],
                )

    def test_tampered_body_id_or_timestamp_is_rejected(self):
        for case in STANDARD["cases"]:
            with self.subTest(case["name"]):
                secrets, now = [case["active_secret"], case["pending_secret"]], case["webhook_timestamp"]
                headers = standard_headers(case, case["webhook_signature_during_rotation"])
                body = body_of(case)
                self.assertRefused("no_match", verify_standard, secrets, headers, body + b"\n", now=now)
                other_id = {**headers, "webhook-id": case["webhook_id"] + "x"}
                self.assertRefused("no_match", verify_standard, secrets, other_id, body, now=now)
                other_ts = {**headers, "webhook-timestamp": str(now + 1)}
                self.assertRefused("no_match", verify_standard, secrets, other_ts, body, now=now)

    def test_timestamps_outside_the_tolerance_are_stale_in_both_directions(self):
        for case in STANDARD["cases"]:
            with self.subTest(case["name"]):
                ts, body = case["webhook_timestamp"], body_of(case)
                headers = standard_headers(case, case["webhook_signature_active_only"])
                secrets = [case["active_secret"]]
                self.assertEqual(verify_standard(secrets, headers, body, now=ts + 300), 0)
                self.assertEqual(verify_standard(secrets, headers, body, now=ts - 300), 0)
                for now in (ts + 301, ts - 301, 0):
                    error = self.assertRefused("stale_timestamp", verify_standard, secrets, headers, body, now=now)
                    self.assertEqual(
                        error.reason, f"webhook timestamp {ts} is outside the tolerance around now ({now})",
                    )
                self.assertEqual(verify_standard(secrets, headers, body, now=ts + 10, tolerance=10), 0)
                self.assertRefused(
                    "stale_timestamp", verify_standard, secrets, headers, body, now=ts + 11, tolerance=10,
                )

    def test_empty_truncated_and_garbled_signatures_are_rejected(self):
        for case in STANDARD["cases"]:
            with self.subTest(case["name"]):
                secrets, body, now = [case["active_secret"]], body_of(case), case["webhook_timestamp"]
                sig = case["webhook_signature_active_only"]
                check = lambda signature: verify_standard(  # noqa: E731
                    secrets, standard_headers(case, signature), body, now=now,
                )
                for empty in ("", "  "):
                    error = self.assertRefused("missing_header", check, empty)
                    self.assertEqual(error.reason, "missing signature header webhook-signature")
                for bad in ("v1,", "v1,short", "v2,abc", "v1a,xyz v2,abc", sig[1:], sig[:46],
                            sig[:-1], sig + "A", sig.rstrip("="), "v1," + "!" * 44, "garbage"):
                    error = self.assertRefused("malformed_header", check, bad)
                    self.assertEqual(error.reason, "malformed header webhook-signature", bad)
                # Unknown versions and garbled entries are skipped when a valid one is present.
                self.assertEqual(check(f"v1a,ignored v1,garbage  {sig}"), 0)
                flipped = "v1," + ("A" if sig[3] != "A" else "B") + sig[4:]
                self.assertRefused("no_match", check, flipped)

    def test_missing_and_malformed_id_and_timestamp_are_rejected(self):
        case = STANDARD["cases"][0]
        secrets, body, now = [case["active_secret"]], body_of(case), case["webhook_timestamp"]
        full = standard_headers(case, case["webhook_signature_active_only"])
        for name in full:
            for headers in ({k: v for k, v in full.items() if k != name}, {**full, name: " "}):
                error = self.assertRefused("missing_header", verify_standard, secrets, headers, body, now=now)
                self.assertEqual(error.reason, f"missing signature header {name}")
        for ts in ("abc", "+1763942400", "01763942400", "-5", "1.5", "1e9", "99999999999999999999"):
            headers = {**full, "webhook-timestamp": ts}
            error = self.assertRefused("malformed_header", verify_standard, secrets, headers, body, now=now)
            self.assertEqual(error.reason, "malformed header webhook-timestamp", ts)

    def test_headers_are_case_insensitive(self):
        case = STANDARD["cases"][1]
        headers = {k.upper(): v for k, v in standard_headers(case, case["webhook_signature_active_only"]).items()}
        self.assertEqual(
            verify_standard([case["active_secret"]], headers, body_of(case), now=case["webhook_timestamp"]), 0,
        )


class SecretTests(unittest.TestCase):
    def test_invalid_or_missing_secrets_fail_loudly(self):
        active = BOLT["cases"][0]["active_secret"]
        headers = BOLT["cases"][0]["headers_active_only"]
        with self.assertRaisesRegex(ValueError, "no signing secrets"):
            verify_bolt([], headers, b"")
        for bad in ("", "whsec_", "whsec_!!!", active.upper(), active[1:], active + "\n", "g" * 64):
            with self.subTest(bad), self.assertRaises(ValueError) as raised:
                verify_bolt([active, bad], headers, b"")
            self.assertNotIn(active, str(raised.exception))

    def test_a_single_secret_string_is_accepted(self):
        case = BOLT["cases"][0]
        self.assertEqual(verify_bolt(case["active_secret"], case["headers_active_only"], body_of(case)), 0)


def standard_sign(secret, webhook_id, timestamp, body):
    mac = hmac.new(secret.encode(), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class RunningReceiver:
    """`verify.py ARGS` run as a real receiver on a free port. `post` sends one request and
    returns (status, answer, the receiver's log line); on exit the receiver is stopped with
    SIGTERM and must exit 0 having printed none of `secrets`."""

    def __init__(self, test, args, secrets, env=None):
        self.test, self.args, self.secrets = test, args, secrets
        self.env = {**os.environ, "HOOKSIGN_VERIFY_SECRETS": "", **(env or {})}
        self.lines = []

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "verify.py"), "--port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )
        self.lines.append(self.proc.stdout.readline())
        started = json.loads(self.lines[0] or "null")
        if not isinstance(started, dict):
            self.proc.wait(timeout=10)
            self.test.fail(f"receiver did not start: {self.proc.stderr.read()}")
        self.url = f"http://127.0.0.1:{started['listening']}/webhooks"
        return self

    def post(self, body, headers):
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            status, answer = error.code, json.loads(error.read())
        self.lines.append(self.proc.stdout.readline())
        return status, answer, json.loads(self.lines[-1])

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        rest, errors = self.proc.communicate(timeout=10)
        if exc[0] is None:
            self.test.assertEqual(self.proc.returncode, 0, errors)
            self.test.assertEqual(rest, "")
        for output in self.lines + [errors]:
            for secret in self.secrets:
                self.test.assertNotIn(secret, output)
        return False


DELIVERY = {"Content-Type": "application/json", "X-Hooksign-Delivery-Id": "dlv_1",
            "X-Hooksign-Event-Id": "evt_1", "X-Hooksign-Attempt": "1"}


class ReceiverTests(unittest.TestCase):
    """Runs `verify.py` as a real receiver on a free port and talks HTTP to it."""

    def test_receiver_accepts_signed_and_refuses_forged_deliveries(self):
        case = BOLT["cases"][1]
        old, new = case["active_secret"], case["pending_secret"]
        args = ["--scheme", "bolt", "--secret", old, "--secret", new]
        with RunningReceiver(self, args, [old, new]) as receiver:
            body = body_of(case)
            signed = {**DELIVERY, **case["headers_during_rotation"]}

            status, answer, line = receiver.post(body, signed)
            self.assertEqual((status, answer), (200, {"ok": True, "matched": 0, "duplicate": False}))
            self.assertEqual(line["delivery_id"], "dlv_1")
            self.assertEqual((line["ok"], line["reason"], line["scheme"]), (True, None, "bolt"))

            status, answer, line = receiver.post(body, {**signed, "X-Hooksign-Attempt": "2"})
            self.assertEqual((status, answer), (200, {"ok": True, "matched": 0, "duplicate": True}))

            other_body = body.replace(b'"evt_1"', b'"evt_2"')
            only_new = {**DELIVERY, "X-Hooksign-Delivery-Id": "dlv_2",
                        "X-Bolt-Hmac-Sha256": bolt_sign(OTHER, other_body),
                        "X-Bolt-Hmac-Sha256-Pending": bolt_sign(new, other_body)}
            status, answer, _ = receiver.post(other_body, only_new)
            self.assertEqual((status, answer), (200, {"ok": True, "matched": 1, "duplicate": False}))

            forged = {**DELIVERY, "X-Hooksign-Delivery-Id": "dlv_3",
                      "X-Bolt-Hmac-Sha256": bolt_sign(OTHER, body)}
            status, answer, line = receiver.post(body, forged)
            self.assertEqual(status, 401)
            self.assertEqual(answer, {"ok": False, "reason": "no signature matches any configured secret"})
            self.assertEqual((line["delivery_id"], line["ok"], line["status"]), ("dlv_3", False, 401))

            status, answer, _ = receiver.post(body + b" ", signed)
            self.assertEqual((status, answer["ok"]), (401, False))

            # A bolt receiver does not look at Standard Webhooks headers, however valid.
            ts = str(int(time.time()))
            standard = {**DELIVERY, "webhook-id": "msg_1", "webhook-timestamp": ts,
                        "webhook-signature": standard_sign(new, "msg_1", ts, body)}
            status, answer, line = receiver.post(body, standard)
            self.assertEqual((status, answer["reason"]), (401, "missing signature header X-Bolt-Hmac-Sha256"))
            self.assertEqual(line["scheme"], "bolt")

    def test_a_bolt_receiver_dedupes_on_the_event_id_in_the_signed_body(self):
        case = BOLT["cases"][1]  # its body is an event with "id": "evt_1"
        secret, body = case["active_secret"], body_of(case)
        with RunningReceiver(self, ["--scheme", "bolt", "--secret", secret], [secret]) as receiver:
            signed = {**DELIVERY, **case["headers_active_only"]}
            status, answer, first = receiver.post(body, signed)
            self.assertEqual((status, answer["duplicate"]), (200, False))
            # A replay under another (unsigned) delivery id is still the same signed event.
            for replay in ("dlv_other", " "):
                status, answer, line = receiver.post(body, {**signed, "X-Hooksign-Delivery-Id": replay})
                self.assertEqual((status, answer["duplicate"]), (200, True), replay)
                self.assertEqual(line["dedupe_id"], "evt_1")
            self.assertEqual(first["dedupe_id"], "evt_1")
            # Another event under the same delivery id is not a duplicate.
            other = body.replace(b'"evt_1"', b'"evt_2"')
            status, answer, line = receiver.post(other, {**DELIVERY, "X-Bolt-Hmac-Sha256": bolt_sign(secret, other)})
            self.assertEqual((status, answer["duplicate"], line["dedupe_id"]), (200, False, "evt_2"))

    def test_a_standard_receiver_refuses_a_delivery_stripped_to_its_bolt_headers(self):
        case = BOLT["cases"][1]
        secret, body = case["active_secret"], body_of(case)
        ts = str(int(time.time()))
        bolt = case["headers_active_only"]
        standard = {"webhook-id": "evt_1", "webhook-timestamp": ts,
                    "webhook-signature": standard_sign(secret, "evt_1", ts, body)}
        with RunningReceiver(self, ["--scheme", "standard", "--secret", secret], [secret]) as receiver:
            status, answer, first = receiver.post(body, {**DELIVERY, **bolt, **standard})
            self.assertEqual((status, answer), (200, {"ok": True, "matched": 0, "duplicate": False}))
            self.assertEqual(first["scheme"], "standard")
            # The same delivery with its webhook-* headers stripped: the X-Bolt signature is
            # valid, but this receiver only takes Standard Webhooks, whose timestamp bounds replays.
            stripped = {**DELIVERY, "X-Hooksign-Delivery-Id": "dlv_2", **bolt}
            status, answer, line = receiver.post(body, stripped)
            self.assertEqual((status, answer), (401, {"ok": False, "reason": "missing signature header webhook-id"}))
            self.assertEqual((line["scheme"], line["ok"]), ("standard", False))
            # A replay under another delivery id is deduplicated on the signed webhook-id.
            replay = {**DELIVERY, "X-Hooksign-Delivery-Id": "dlv_3", **standard}
            status, answer, line = receiver.post(body, replay)
            self.assertEqual((status, answer["duplicate"]), (200, True))
            self.assertEqual((first["dedupe_id"], line["dedupe_id"]), ("evt_1", "evt_1"))

    def test_a_receiver_does_not_start_without_an_explicit_scheme(self):
        secret = BOLT["cases"][0]["active_secret"]
        for scheme in ([], ["--scheme", "auto"], ["--scheme", "both"]):
            with self.subTest(scheme):
                try:
                    result = subprocess.run(
                        [sys.executable, str(HERE / "verify.py"), "--port", "0", "--secret", secret, *scheme],
                        capture_output=True, text=True, timeout=10,
                    )
                except subprocess.TimeoutExpired:
                    self.fail(f"the receiver started with {scheme or 'no --scheme'}")
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn("--scheme", result.stderr)
                self.assertNotIn(secret, result.stderr + result.stdout)

    def test_receiver_reads_secrets_from_a_file_or_the_environment(self):
        case = BOLT["cases"][1]
        old, new = case["active_secret"], case["pending_secret"]
        body = body_of(case)
        only_new = {**DELIVERY, "X-Bolt-Hmac-Sha256": bolt_sign(OTHER, body),
                    "X-Bolt-Hmac-Sha256-Pending": bolt_sign(new, body)}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "secrets.txt"
            path.write_text(f"{old}\n{new}\n")
            for args, env in ((["--secret-file", str(path)], {}),
                              ([], {"HOOKSIGN_VERIFY_SECRETS": f"{old},{new}"})):
                with self.subTest(args or env), \
                        RunningReceiver(self, ["--scheme", "bolt", *args], [old, new], env) as receiver:
                    status, answer, _ = receiver.post(body, only_new)
                    self.assertEqual((status, answer), (200, {"ok": True, "matched": 1, "duplicate": False}))
        for args in (["--secret-file", str(HERE / "no-such-file")], []):
            with self.subTest(args):
                result = subprocess.run(
                    [sys.executable, str(HERE / "verify.py"), "--port", "0", "--scheme", "bolt", *args],
                    capture_output=True, text=True, timeout=10, env={**os.environ, "HOOKSIGN_VERIFY_SECRETS": ""},
                )
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn("secret", result.stderr)

    def test_help_says_a_secret_on_the_command_line_is_visible_to_other_users(self):
        result = subprocess.run([sys.executable, str(HERE / "verify.py"), "--help"],
                                capture_output=True, text=True, timeout=10)
        self.assertEqual(result.returncode, 0, result.stderr)
        text = " ".join(result.stdout.split())
        for expected in ("--secret-file", "$HOOKSIGN_VERIFY_SECRETS", "VISIBLE TO OTHER USERS (ps, /proc)"):
            self.assertIn(expected, text)

    def test_receiver_refuses_to_start_with_an_invalid_secret(self):
        result = subprocess.run(
            [sys.executable, str(HERE / "verify.py"), "--port", "0", "--scheme", "bolt", "--secret", "not-a-secret"],
            capture_output=True, text=True, timeout=10, env={**os.environ, "HOOKSIGN_VERIFY_SECRETS": ""},
        )
        self.assertEqual(result.returncode, 2)
        self.assertIn("invalid signing secret", result.stderr)
        self.assertNotIn("not-a-secret", result.stderr + result.stdout)


if __name__ == "__main__":
    unittest.main()
