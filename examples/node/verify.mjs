// Verify hooksign webhook signatures in Node.js (node: built-ins only, Node 18.3+).
//
// How a merchant uses it: copy everything above the "Example receiver" line into your app (or
// import it), then in your webhook handler call
//
//   const matched = verifyBolt(secrets, req.headers, rawBody);      // X-Bolt-Hmac-Sha256
//   const matched = verifyStandard(secrets, req.headers, rawBody);  // Standard Webhooks
//
// and answer 401 when it throws a VerificationError. Pass the raw body bytes (a Buffer) exactly
// as received, before any JSON parsing: re-serialised JSON does not verify (with Express, use
// `express.raw({ type: 'application/json' })` on the webhook route). `secrets` is every signing
// secret you currently trust, as hooksign shows them (the 64-character hex string, or
// `whsec_...`). During a rotation hold the old *and* the new secret; the returned index tells
// you which one matched, so once the new one is the only one matching you can drop the old one.
//
// Below the line is a small receiver built on node:http, for trying a setup end to end:
//
//   node verify.mjs --scheme bolt|standard --port 9002 --secret-file secrets.txt
//       [--host 127.0.0.1] [--tolerance 300]
//   HOOKSIGN_VERIFY_SECRETS="$OLD,$NEW" node verify.mjs --scheme standard
//
// Read secrets from a file (one per line) or the environment: one given with --secret is visible
// to every user of the machine in ps.
//
// Verify the one scheme your endpoint uses: picking it from the headers present would let anyone
// strip the webhook-* headers and pass as bolt, which has no timestamp check. Dedupe on an id the
// signature covers (webhook-id, or the event "id" in the signed body), never on the unsigned
// X-Hooksign-Delivery-Id.

import { createHmac, timingSafeEqual } from 'node:crypto';

export const BOLT_SIGNATURE = 'X-Bolt-Hmac-Sha256';
export const BOLT_SIGNATURE_PENDING = 'X-Bolt-Hmac-Sha256-Pending';
export const WEBHOOK_ID = 'webhook-id';
export const WEBHOOK_TIMESTAMP = 'webhook-timestamp';
export const WEBHOOK_SIGNATURE = 'webhook-signature';

// How far webhook-timestamp may be from your clock, either way: bounds how long a captured
// delivery can be replayed.
export const DEFAULT_TOLERANCE = 300;

const HEX_SECRET = /^[0-9a-f]{64}$/;
const PADDED_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const TAG_BASE64 = /^[A-Za-z0-9+/]{43}=$/;
const UNIX_SECONDS = /^(?:0|[1-9][0-9]{0,18})$/;
const MAX_UNIX_SECONDS = 2n ** 63n - 1n;

/**
 * A delivery that must be refused (answer 401). `reason` says why; `code` is one of
 * missing_header, malformed_header, stale_timestamp, no_match.
 */
export class VerificationError extends Error {
  constructor(reason, code) {
    super(reason);
    this.name = 'VerificationError';
    this.reason = reason;
    this.code = code;
  }
}

/**
 * The HMAC key for a secret as hooksign shows it: the UTF-8 bytes of the 64-character
 * lowercase hex string itself, or the base64-decoded part of `whsec_<base64>`.
 *
 * Throws a TypeError for anything else (a stray newline or space included): a mistyped secret
 * should fail loudly at start-up, not as every delivery being refused.
 */
export function signingKey(secret) {
  if (typeof secret === 'string' && secret.startsWith('whsec_')) {
    const encoded = secret.slice('whsec_'.length);
    if (encoded !== '' && PADDED_BASE64.test(encoded)) {
      const key = Buffer.from(encoded, 'base64');
      // Re-encoding refuses non-canonical variants (stray bits in the last character).
      if (key.toString('base64') === encoded) return key;
    }
    throw new TypeError('invalid signing secret: whsec_ must be followed by base64');
  }
  if (typeof secret === 'string' && HEX_SECRET.test(secret)) {
    return Buffer.from(secret, 'utf8');
  }
  throw new TypeError(
    'invalid signing secret: expected 64 lowercase hex characters or whsec_ + base64',
  );
}

/**
 * Verifies the `bolt` scheme and returns the index (in `secrets`) of the secret that matched.
 *
 * Accepts when X-Bolt-Hmac-Sha256 or X-Bolt-Hmac-Sha256-Pending (sent while a rotation is
 * pending, signed with the new secret) matches any of `secrets`.
 */
export function verifyBolt(secrets, headers, body) {
  const keys = signingKeys(secrets);
  const raw = rawBody(body);
  const sent = [BOLT_SIGNATURE, BOLT_SIGNATURE_PENDING].map((name) => [name, header(headers, name)]);
  const present = sent.filter(([, value]) => value !== null).map(([name]) => name);
  if (present.length === 0) {
    throw new VerificationError(`missing signature header ${BOLT_SIGNATURE}`, 'missing_header');
  }
  // A garbled header does not hide a valid one next to it.
  const tags = sent.map(([, value]) => value && decodeTag(value)).filter(Boolean);
  if (tags.length === 0) {
    throw new VerificationError(`malformed header ${present[0]}`, 'malformed_header');
  }
  const index = keys.findIndex((key) => matchesAny(hmac(key, [raw]), tags));
  if (index === -1) {
    throw new VerificationError('no signature matches any configured secret', 'no_match');
  }
  return index;
}

/**
 * Verifies the Standard Webhooks scheme and returns the index of the secret that matched.
 *
 * Refuses a webhook-timestamp more than `tolerance` seconds away from `now` (Unix seconds,
 * default: the current time), then accepts when any `v1,` entry of webhook-signature matches
 * any of `secrets`. Entries of other versions are ignored.
 */
export function verifyStandard(secrets, headers, body, { now, tolerance = DEFAULT_TOLERANCE } = {}) {
  const keys = signingKeys(secrets);
  const raw = rawBody(body);
  if (!(tolerance >= 0)) throw new RangeError('tolerance must not be negative');
  const values = {};
  for (const name of [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE]) {
    values[name] = header(headers, name);
    if (values[name] === null) {
      throw new VerificationError(`missing signature header ${name}`, 'missing_header');
    }
  }
  const rawTimestamp = values[WEBHOOK_TIMESTAMP];

  // Plain decimal digits only: `+5` or `05` would be signed differently than they read.
  if (!UNIX_SECONDS.test(rawTimestamp) || BigInt(rawTimestamp) > MAX_UNIX_SECONDS) {
    throw new VerificationError(`malformed header ${WEBHOOK_TIMESTAMP}`, 'malformed_header');
  }
  const timestamp = Number(rawTimestamp);
  const clock = Math.trunc(now ?? Date.now() / 1000);
  if (Math.abs(clock - timestamp) > tolerance) {
    throw new VerificationError(
      `webhook timestamp ${rawTimestamp} is outside the tolerance around now (${clock})`,
      'stale_timestamp',
    );
  }

  const tags = values[WEBHOOK_SIGNATURE]
    .split(/\s+/)
    .filter((entry) => entry.startsWith('v1,'))
    .map((entry) => decodeTag(entry.slice('v1,'.length)))
    .filter(Boolean);
  if (tags.length === 0) {
    throw new VerificationError(`malformed header ${WEBHOOK_SIGNATURE}`, 'malformed_header');
  }

  // The timestamp is canonical decimal, so its raw text is exactly what was signed.
  const prefix = Buffer.from(`${values[WEBHOOK_ID]}.${rawTimestamp}.`, 'utf8');
  const index = keys.findIndex((key) => matchesAny(hmac(key, [prefix, raw]), tags));
  if (index === -1) {
    throw new VerificationError('no signature matches any configured secret', 'no_match');
  }
  return index;
}

function signingKeys(secrets) {
  const keys = (typeof secrets === 'string' ? [secrets] : [...secrets]).map(signingKey);
  if (keys.length === 0) throw new TypeError('no signing secrets configured');
  return keys;
}

function rawBody(body) {
  if (body instanceof Uint8Array) return body; // Buffer is a Uint8Array
  throw new TypeError('pass the raw request body as a Buffer, exactly as received');
}

function hmac(key, parts) {
  const mac = createHmac('sha256', key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

/**
 * The first value of header `name`, matched case-insensitively, trimmed; null if absent or
 * blank. Works with Node's `req.headers` or `req.headersDistinct`, a fetch `Headers`, a `Map`,
 * a plain object, or an array of [name, value] pairs.
 */
function header(headers, name) {
  const entries = Array.isArray(headers)
    ? headers
    : typeof headers.entries === 'function'
      ? headers.entries()
      : Object.entries(headers);
  const wanted = name.toLowerCase();
  for (const [key, value] of entries) {
    if (String(key).toLowerCase() === wanted) {
      const first = Array.isArray(value) ? value[0] : value;
      return (typeof first === 'string' && first.trim()) || null;
    }
  }
  return null;
}

/** The 32-byte HMAC in `value`, or null unless it is canonical padded base64 of 32 bytes. */
function decodeTag(value) {
  if (!TAG_BASE64.test(value)) return null;
  const tag = Buffer.from(value, 'base64');
  // Re-encoding refuses non-canonical variants (stray bits in the last character).
  return tag.length === 32 && tag.toString('base64') === value ? tag : null;
}

function matchesAny(expected, tags) {
  let matched = false;
  for (const tag of tags) {
    // Compare against every tag, so the time taken does not depend on which one matched.
    matched = timingSafeEqual(expected, tag) || matched;
  }
  return matched;
}

// ---- Example receiver ----------------------------------------------------------------------
// Not needed to verify in your own app. Run `node verify.mjs --help` for the options.

import { createServer } from 'node:http';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const DELIVERY_ID = 'x-hooksign-delivery-id';
const MAX_BODY_BYTES = 1024 * 1024;
const SECRETS_ENV = 'HOOKSIGN_VERIFY_SECRETS';
const SCHEMES = ['bolt', 'standard'];

/**
 * The id to dedupe a verified delivery on, one the signature covers: webhook-id (Standard
 * Webhooks signs it with the body) or the event "id" inside the signed body (bolt signs the body
 * only). Never X-Hooksign-Delivery-Id: it is not signed, so a replayer can change it at will.
 * null for a body without one, which hooksign never sends.
 */
export function signedId(scheme, headers, body) {
  if (scheme === 'standard') return header(headers, WEBHOOK_ID);
  let event;
  try {
    event = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return null;
  }
  const id = event !== null && typeof event === 'object' ? event.id : undefined;
  return (typeof id === 'string' && id.trim()) || null;
}

/**
 * Signed event ids already accepted (hooksign retries until it gets a 2xx, so the same event
 * can arrive twice). Bounded, oldest forgotten first; a real app would record them in its
 * database, in the same transaction as the work.
 */
export class SeenEvents {
  #ids = new Set();

  constructor(capacity = 100_000) {
    this.capacity = capacity;
  }

  /** Records `eventId`; true if it had been seen before. */
  add(eventId) {
    if (this.#ids.delete(eventId)) {
      this.#ids.add(eventId);
      return true;
    }
    this.#ids.add(eventId);
    if (this.#ids.size > this.capacity) this.#ids.delete(this.#ids.values().next().value);
    return false;
  }
}

/** Prints one compact JSON line to stdout (synchronous for files and pipes on Linux). */
function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function firstHeader(req, name) {
  return req.headersDistinct[name]?.[0] ?? null;
}

export function createReceiver({ secrets, scheme, tolerance = DEFAULT_TOLERANCE }) {
  if (!SCHEMES.includes(scheme)) throw new TypeError('scheme must be bolt or standard');
  const seen = new SeenEvents();

  function respond(req, res, status, used, reason, matched = null, duplicate = false, dedupeId = null) {
    const ok = status === 200;
    emit({
      // Unsigned, so only for matching this line with hooksign's records.
      delivery_id: firstHeader(req, DELIVERY_ID)?.trim() || null,
      event_id: firstHeader(req, 'x-hooksign-event-id'),
      attempt: firstHeader(req, 'x-hooksign-attempt'),
      dedupe_id: dedupeId,
      scheme: used,
      status,
      ok,
      matched,
      duplicate,
      reason,
    });
    const answer = ok ? { ok, matched, duplicate } : { ok, reason };
    const payload = JSON.stringify(answer);
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(payload),
      // The body may be unread: do not reuse the connection.
      ...(ok ? {} : { Connection: 'close' }),
    });
    res.end(payload);
  }

  function verifyRequest(req, res, body) {
    // Only the scheme this receiver was started with: never one chosen by the request.
    let matched;
    try {
      matched = scheme === 'standard'
        ? verifyStandard(secrets, req.headersDistinct, body, { tolerance })
        : verifyBolt(secrets, req.headersDistinct, body);
    } catch (error) {
      if (!(error instanceof VerificationError)) throw error;
      return respond(req, res, 401, scheme, error.reason);
    }
    // Only verified deliveries are remembered, so forgeries cannot poison the dedup set.
    const eventId = signedId(scheme, req.headersDistinct, body);
    const duplicate = eventId ? seen.add(eventId) : false;
    respond(req, res, 200, scheme, null, matched, duplicate, eventId);
  }

  return createServer((req, res) => {
    if (req.method !== 'POST') return respond(req, res, 405, null, 'method not allowed');
    const length = (req.headers['content-length'] ?? '').trim();
    if (!/^[0-9]+$/.test(length)) return respond(req, res, 411, null, 'Content-Length required');
    if (Number(length) > MAX_BODY_BYTES) return respond(req, res, 413, null, 'body too large');

    // The raw bytes, collected before (and instead of) any JSON parsing: that is what was signed.
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => verifyRequest(req, res, Buffer.concat(chunks)));
  });
}

const USAGE = `usage: node verify.mjs --scheme bolt|standard [--port PORT] [--host HOST]
                      [--secret-file PATH ...] [--secret SECRET ...] [--tolerance SECONDS]

Example hooksign webhook receiver: verifies every POST and answers
200 {"ok":true,"matched":i,"duplicate":bool} or 401 {"ok":false,"reason":"..."}.

  --port PORT          default 9002; 0 picks a free port
  --host HOST          default 127.0.0.1
  --secret-file PATH   file holding the signing secrets to accept, one per line (old and
                       new during a rotation); repeatable. Without any (and without
                       --secret), $${SECRETS_ENV} is read: secrets separated by commas
  --secret SECRET      a signing secret to accept; repeatable. VISIBLE TO OTHER USERS (ps,
                       /proc) and kept in shell history: prefer --secret-file or
                       $${SECRETS_ENV}
  --scheme SCHEME      required: bolt or standard, the scheme of the hooksign endpoint
                       pointing here (for a "both" endpoint, pick standard: its timestamp
                       bounds replays); only that scheme is accepted
  --tolerance SECONDS  how far a webhook-timestamp may be off (standard scheme), default 300
`;

/** Secrets separated by commas or whitespace, neither of which occurs in a secret. */
function splitSecrets(text) {
  return text.split(/[,\s]+/).filter(Boolean);
}

function usageError(message) {
  process.stderr.write(`${USAGE}\nerror: ${message}\n`);
  process.exit(2);
}

function parseCommandLine(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string', default: '9002' },
        host: { type: 'string', default: '127.0.0.1' },
        'secret-file': { type: 'string', multiple: true, default: [] },
        secret: { type: 'string', multiple: true, default: [] },
        scheme: { type: 'string' },
        tolerance: { type: 'string', default: String(DEFAULT_TOLERANCE) },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    usageError(error.message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const port = Number(values.port);
  if (!/^[0-9]+$/.test(values.port) || port > 65535) usageError('--port must be 0-65535');
  if (values.scheme === undefined) usageError('--scheme is required: bolt or standard');
  if (!SCHEMES.includes(values.scheme)) usageError('--scheme must be bolt or standard');
  if (!/^[0-9]+$/.test(values.tolerance)) usageError('--tolerance must not be negative');
  let secrets = [...values.secret];
  for (const path of values['secret-file']) {
    try {
      secrets.push(...splitSecrets(readFileSync(path, 'utf8')));
    } catch (error) {
      // The reason, not the content: the message never includes a secret.
      usageError(`cannot read the secret file ${path}: ${error.code ?? error.message}`);
    }
  }
  if (secrets.length === 0) secrets = splitSecrets(process.env[SECRETS_ENV] ?? '');
  if (secrets.length === 0) usageError(`give --secret-file PATH or set ${SECRETS_ENV} (or --secret)`);
  for (const secret of secrets) {
    try {
      signingKey(secret);
    } catch (error) {
      usageError(error.message); // the message never includes the secret itself
    }
  }
  return {
    port, host: values.host, secrets, scheme: values.scheme, tolerance: Number(values.tolerance),
  };
}

function main(argv) {
  const { port, host, ...options } = parseCommandLine(argv);
  const server = createReceiver(options);
  const stop = () => {
    server.close();
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  server.on('error', (error) => {
    process.stderr.write(`error: ${error.message}\n`);
    process.exit(1);
  });
  server.listen(port, host, () => emit({ listening: server.address().port }));
}

const runAsScript =
  process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (runAsScript) main(process.argv.slice(2));
