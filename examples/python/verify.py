"""Verify hooksign webhook signatures in Python (standard library only, Python 3.8+).

How a merchant uses it: copy everything above the "Example receiver" line into your app, then
in your webhook handler call

    matched = verify_bolt(secrets, request.headers, raw_body)            # X-Bolt-Hmac-Sha256
    matched = verify_standard(secrets, request.headers, raw_body)        # Standard Webhooks

and answer 401 when it raises VerificationError. Pass the raw body bytes exactly as received,
before any JSON parsing: re-serialised JSON does not verify. `secrets` is every signing secret
you currently trust, as hooksign shows them (the 64-character hex string, or `whsec_...`).
During a rotation hold the old *and* the new secret; the returned index tells you which one
matched, so once the new one is the only one matching you can drop the old one.

Below the line is a small receiver built on http.server, for trying a setup end to end:

    python3 verify.py --scheme bolt|standard --port 9001 --secret-file secrets.txt
        [--host 127.0.0.1] [--tolerance 300]
    HOOKSIGN_VERIFY_SECRETS="$OLD,$NEW" python3 verify.py --scheme standard

Read secrets from a file (one per line) or the environment: one given with --secret is visible
to every user of the machine in ps.

Verify the one scheme your endpoint uses: picking it from the headers present would let anyone
strip the webhook-* headers and pass as bolt, which has no timestamp check. Dedupe on an id the
signature covers (webhook-id, or the event "id" in the signed body), never on the unsigned
X-Hooksign-Delivery-Id.
"""

import base64
import binascii
import hashlib
import hmac
import time

BOLT_SIGNATURE = "X-Bolt-Hmac-Sha256"
BOLT_SIGNATURE_PENDING = "X-Bolt-Hmac-Sha256-Pending"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"

# How far webhook-timestamp may be from your clock, either way: bounds how long a captured
# delivery can be replayed.
DEFAULT_TOLERANCE = 300

_HEX_DIGITS = frozenset("0123456789abcdef")
_MAX_UNIX_SECONDS = 2**63 - 1


class VerificationError(Exception):
    """A delivery that must be refused (answer 401). `reason` says why, `code` is one of
    missing_header, malformed_header, stale_timestamp, no_match."""

    def __init__(self, reason, code):
        super().__init__(reason)
        self.reason = reason
        self.code = code


def signing_key(secret):
    """The HMAC key for a secret as hooksign shows it: the UTF-8 bytes of the 64-character
    lowercase hex string itself, or the base64-decoded part of `whsec_<base64>`.

    Raises ValueError for anything else (a stray newline or space included): a mistyped secret
    should fail loudly at start-up, not as every delivery being refused."""
    if not isinstance(secret, str):
        raise ValueError("invalid signing secret: expected a string")
    if secret.startswith("whsec_"):
        encoded = secret[len("whsec_"):]
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            key = b""
        if not key or base64.b64encode(key).decode("ascii") != encoded:
            raise ValueError("invalid signing secret: whsec_ must be followed by base64")
        return key
    if len(secret) == 64 and set(secret) <= _HEX_DIGITS:
        return secret.encode("utf-8")
    raise ValueError(
        "invalid signing secret: expected 64 lowercase hex characters or whsec_ + base64"
    )


def verify_bolt(secrets, headers, body):
    """Verify the `bolt` scheme and return the index (in `secrets`) of the secret that matched.

    Accepts when X-Bolt-Hmac-Sha256 or X-Bolt-Hmac-Sha256-Pending (sent while a rotation is
    pending, signed with the new secret) matches any of `secrets`."""
    keys = _signing_keys(secrets)
    body = _raw_body(body)
    sent = [(name, _header(headers, name)) for name in (BOLT_SIGNATURE, BOLT_SIGNATURE_PENDING)]
    present = [name for name, value in sent if value is not None]
    if not present:
        raise VerificationError(
            f"missing signature header {BOLT_SIGNATURE}", "missing_header"
        )
    # A garbled header does not hide a valid one next to it.
    tags = [tag for tag in (_decode_tag(value) for _, value in sent if value) if tag]
    if not tags:
        raise VerificationError(f"malformed header {present[0]}", "malformed_header")
    for index, key in enumerate(keys):
        expected = hmac.new(key, body, hashlib.sha256).digest()
        if _matches_any(expected, tags):
            return index
    raise VerificationError("no signature matches any configured secret", "no_match")


def verify_standard(secrets, headers, body, now=None, tolerance=DEFAULT_TOLERANCE):
    """Verify the Standard Webhooks scheme and return the index of the secret that matched.

    Refuses a webhook-timestamp more than `tolerance` seconds away from `now` (Unix seconds,
    default: the current time), then accepts when any `v1,` entry of webhook-signature matches
    any of `secrets`. Entries of other versions are ignored."""
    keys = _signing_keys(secrets)
    body = _raw_body(body)
    if tolerance < 0:
        raise ValueError("tolerance must not be negative")
    values = {}
    for name in (WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE):
        values[name] = _header(headers, name)
        if values[name] is None:
            raise VerificationError(f"missing signature header {name}", "missing_header")
    webhook_id = values[WEBHOOK_ID]
    raw_timestamp = values[WEBHOOK_TIMESTAMP]

    timestamp = _parse_unix_seconds(raw_timestamp)
    if timestamp is None:
        raise VerificationError(f"malformed header {WEBHOOK_TIMESTAMP}", "malformed_header")
    now = int(time.time() if now is None else now)
    if abs(now - timestamp) > tolerance:
        raise VerificationError(
            f"webhook timestamp {timestamp} is outside the tolerance around now ({now})",
            "stale_timestamp",
        )

    tags = []
    for entry in values[WEBHOOK_SIGNATURE].split():
        version, _, signature = entry.partition(",")
        tag = _decode_tag(signature) if version == "v1" else None
        if tag:
            tags.append(tag)
    if not tags:
        raise VerificationError(f"malformed header {WEBHOOK_SIGNATURE}", "malformed_header")

    # The timestamp is canonical decimal, so its raw text is exactly what was signed.
    signed = f"{webhook_id}.{raw_timestamp}.".encode("utf-8") + body
    for index, key in enumerate(keys):
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        if _matches_any(expected, tags):
            return index
    raise VerificationError("no signature matches any configured secret", "no_match")


def _signing_keys(secrets):
    if isinstance(secrets, str):
        secrets = [secrets]
    keys = [signing_key(secret) for secret in secrets]
    if not keys:
        raise ValueError("no signing secrets configured")
    return keys


def _raw_body(body):
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError("pass the raw request body as bytes, exactly as received")


def _header(headers, name):
    """The first value of header `name`, matched case-insensitively, stripped; None if absent or
    blank. Works with a dict, any mapping (Flask, Django, http.server headers), or a list of
    (name, value) pairs, str or bytes (ASGI)."""
    pairs = headers.items() if hasattr(headers, "items") else headers
    wanted = name.lower()
    for key, value in pairs:
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if key.lower() == wanted:
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            return value.strip() or None
    return None


def _decode_tag(value):
    """The 32-byte HMAC in `value`, or None unless it is canonical padded base64 of 32 bytes."""
    if len(value) != 44:  # also keeps a huge header from costing a huge decode
        return None
    try:
        tag = base64.b64decode(value, validate=True)
    except binascii.Error:
        return None
    # Re-encoding refuses non-canonical variants (stray bits in the last character).
    if len(tag) != 32 or base64.b64encode(tag).decode("ascii") != value:
        return None
    return tag


def _matches_any(expected, tags):
    matched = False
    for tag in tags:  # compare against every tag, so the time taken does not depend on which
        matched |= hmac.compare_digest(expected, tag)
    return matched


def _parse_unix_seconds(raw):
    """Plain decimal digits only: `+5` or `05` would be signed differently than they read."""
    canonical = raw.isascii() and raw.isdigit() and (raw == "0" or not raw.startswith("0"))
    if not canonical or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= _MAX_UNIX_SECONDS else None


# ---- Example receiver ----------------------------------------------------------------------
# Not needed to verify in your own app. Run `python3 verify.py --help` for the options.

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import OrderedDict  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

DELIVERY_ID = "X-Hooksign-Delivery-Id"
MAX_BODY_BYTES = 1024 * 1024
SECRETS_ENV = "HOOKSIGN_VERIFY_SECRETS"


def signed_id(scheme, headers, body):
    """The id to dedupe a verified delivery on, one the signature covers: webhook-id (Standard
    Webhooks signs it with the body) or the event "id" inside the signed body (bolt signs the body
    only). Never X-Hooksign-Delivery-Id: it is not signed, so a replayer can change it at will.
    None for a body without one, which hooksign never sends."""
    if scheme == "standard":
        return _header(headers, WEBHOOK_ID)
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    event_id = event.get("id") if isinstance(event, dict) else None
    return (event_id.strip() or None) if isinstance(event_id, str) else None


class SeenEvents:
    """Signed event ids already accepted (hooksign retries until it gets a 2xx, so the same
    event can arrive twice). Bounded, oldest forgotten first; a real app would record them in
    its database, in the same transaction as the work."""

    def __init__(self, capacity=100_000):
        self._ids = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, event_id):
        """Records `event_id`; True if it had been seen before."""
        with self._lock:
            if event_id in self._ids:
                self._ids.move_to_end(event_id)
                return True
            self._ids[event_id] = None
            if len(self._ids) > self._capacity:
                self._ids.popitem(last=False)
            return False


_stdout_lock = threading.Lock()


def emit(record):
    """Prints one compact JSON line to stdout, flushed at once, so a supervising process (or
    test) sees each event as it happens. The lock keeps lines from concurrent requests whole."""
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
    with _stdout_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def make_handler(secrets, scheme, tolerance, seen):
    class WebhookHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def version_string(self):
            return "hooksign-example-receiver"

        def do_POST(self):
            length = self.headers.get("Content-Length", "").strip()
            if not (length.isascii() and length.isdigit()):
                return self.respond(411, None, "Content-Length required")
            if int(length) > MAX_BODY_BYTES:
                return self.respond(413, None, "body too large")
            # The raw bytes, read before (and instead of) any JSON parsing: that is what was signed.
            body = self.rfile.read(int(length))
            if len(body) != int(length):
                return self.respond(400, None, "incomplete body")

            # Only the scheme this receiver was started with: never one chosen by the request.
            try:
                if scheme == "standard":
                    matched = verify_standard(secrets, self.headers, body, tolerance=tolerance)
                else:
                    matched = verify_bolt(secrets, self.headers, body)
            except VerificationError as error:
                return self.respond(401, scheme, error.reason)
            # Only verified deliveries are remembered, so forgeries cannot poison the dedup set.
            event_id = signed_id(scheme, self.headers, body)
            duplicate = seen.add(event_id) if event_id else False
            self.respond(200, scheme, None, matched, duplicate, event_id)

        def do_GET(self):
            self.respond(405, None, "method not allowed")

        do_PUT = do_PATCH = do_DELETE = do_GET

        def respond(self, status, used, reason, matched=None, duplicate=False, dedupe_id=None):
            """Prints the request's log line, then sends the JSON answer."""
            ok = status == 200
            emit({
                # Unsigned, so only for matching this line with hooksign's records.
                "delivery_id": self.headers.get(DELIVERY_ID, "").strip() or None,
                "event_id": self.headers.get("X-Hooksign-Event-Id"),
                "attempt": self.headers.get("X-Hooksign-Attempt"),
                "dedupe_id": dedupe_id,
                "scheme": used,
                "status": status,
                "ok": ok,
                "matched": matched,
                "duplicate": duplicate,
                "reason": reason,
            })
            if ok:
                answer = {"ok": True, "matched": matched, "duplicate": duplicate}
            else:
                answer = {"ok": False, "reason": reason}
                # The body may be unread: do not reuse the connection.
                self.close_connection = True
            payload = json.dumps(answer, separators=(",", ":")).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):
            pass  # one JSON line per request is printed instead

    return WebhookHandler


def split_secrets(text):
    """Secrets separated by commas or whitespace, neither of which occurs in a secret."""
    return [part for part in re.split(r"[,\s]+", text) if part]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Example hooksign webhook receiver: verifies every POST and answers "
        '200 {"ok":true,"matched":i,"duplicate":bool} or 401 {"ok":false,"reason":"..."}.'
    )
    parser.add_argument("--port", type=int, default=9001, help="default 9001; 0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument(
        "--secret-file", action="append", default=[], metavar="PATH",
        help="file holding the signing secrets to accept, one per line (old and new during a "
        f"rotation); repeatable. Without any (and without --secret), ${SECRETS_ENV} is read: "
        "secrets separated by commas",
    )
    parser.add_argument(
        "--secret", action="append", default=[],
        help="a signing secret to accept; repeatable. VISIBLE TO OTHER USERS (ps, /proc) and "
        f"kept in shell history: prefer --secret-file or ${SECRETS_ENV}",
    )
    parser.add_argument(
        "--scheme", choices=("bolt", "standard"), required=True,
        help="the scheme of the hooksign endpoint pointing here (for a `both` endpoint, pick "
        "standard: its timestamp bounds replays); only that scheme is accepted",
    )
    parser.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE,
                        help="seconds a webhook-timestamp may be off (standard scheme)")
    args = parser.parse_args(argv)
    for path in args.secret_file:
        try:
            with open(path, encoding="utf-8") as file:
                args.secret += split_secrets(file.read())
        # The reason, never the content (a UnicodeDecodeError would quote a byte of it).
        except OSError as error:
            parser.error(f"cannot read the secret file {path}: {error.strerror}")
        except UnicodeDecodeError:
            parser.error(f"the secret file {path} is not UTF-8")
    if not args.secret:
        args.secret = split_secrets(os.environ.get(SECRETS_ENV, ""))
    if not args.secret:
        parser.error(f"give --secret-file PATH or set {SECRETS_ENV} (or --secret)")
    for secret in args.secret:
        try:
            signing_key(secret)
        except ValueError as error:
            parser.error(str(error))  # the message never includes the secret itself
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0-65535")
    if args.tolerance < 0:
        parser.error("--tolerance must not be negative")
    return args


def main(argv=None):
    args = parse_args(argv)
    handler = make_handler(args.secret, args.scheme, args.tolerance, SeenEvents())
    try:
        server = ThreadingHTTPServer((args.host, args.port), handler)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit({"listening": server.server_address[1]})
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
