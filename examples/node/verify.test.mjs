// Tests for verify.mjs against the shared vectors in tests/vectors (every case of every file),
// plus the example receiver run as a real process.
//
// Run from the repository root:  node --test examples/node/

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { VerificationError, signingKey, verifyBolt, verifyStandard } from './verify.mjs';

const VECTORS = new URL('../../tests/vectors/', import.meta.url);
const SCRIPT = fileURLToPath(new URL('./verify.mjs', import.meta.url));

// A valid secret that signs none of the vectors.
const OTHER = '0'.repeat(64);

const load = (name) => JSON.parse(readFileSync(new URL(name, VECTORS), 'utf8'));
const BOLT = load('bolt-signatures.json');
const STANDARD = load('standard-webhooks.json');

const bodyOf = (c) => Buffer.from(c.body_base64, 'base64');
const boltSign = (secret, body) => createHmac('sha256', secret).update(body).digest('base64');
const standardHeaders = (c, signature) => ({
  'webhook-id': c.webhook_id,
  'webhook-timestamp': String(c.webhook_timestamp),
  'webhook-signature': signature,
});

/** Asserts that `call` throws a VerificationError with `code`; returns the error. */
function assertRefused(code, call, message) {
  let thrown;
  assert.throws(call, (error) => {
    thrown = error;
    return error instanceof VerificationError && error.code === code;
  }, message);
  return thrown;
}

/** Runs `check` once per vector case, naming the case in any failure. */
function eachCase(cases, check) {
  assert.ok(cases.length > 0);
  for (const c of cases) {
    try {
      check(c);
    } catch (error) {
      error.message = `[${c.name}] ${error.message}`;
      throw error;
    }
  }
}

describe('bolt vectors', () => {
  test('active-only headers verify with the active secret', () => {
    eachCase(BOLT.cases, (c) => {
      assert.equal(verifyBolt([c.active_secret], c.headers_active_only, bodyOf(c)), 0);
      assert.equal(verifyBolt([OTHER, c.active_secret], c.headers_active_only, bodyOf(c)), 1);
    });
  });

  test('during a rotation the old secret alone accepts', () => {
    eachCase(BOLT.cases, (c) => {
      assert.equal(verifyBolt([c.active_secret], c.headers_during_rotation, bodyOf(c)), 0);
    });
  });

  test('during a rotation the new secret alone accepts the pending header', () => {
    eachCase(BOLT.cases, (c) => {
      const headers = c.headers_during_rotation;
      assert.equal(verifyBolt([c.pending_secret], headers, bodyOf(c)), 0);
      const pendingOnly = { 'X-Bolt-Hmac-Sha256-Pending': headers['X-Bolt-Hmac-Sha256-Pending'] };
      assert.equal(verifyBolt([c.pending_secret], pendingOnly, bodyOf(c)), 0);
    });
  });

  test('holding old and new reports the first matching secret', () => {
    eachCase(BOLT.cases, (c) => {
      const [old, neu] = [c.active_secret, c.pending_secret];
      const headers = c.headers_during_rotation;
      assert.equal(verifyBolt([old, neu], headers, bodyOf(c)), 0);
      assert.equal(verifyBolt([neu, old], headers, bodyOf(c)), 0);
      assert.equal(verifyBolt([OTHER, neu], headers, bodyOf(c)), 1);
    });
  });

  test('the new secret does not match before the rotation starts', () => {
    eachCase(BOLT.cases, (c) => {
      assertRefused('no_match', () => verifyBolt([c.pending_secret], c.headers_active_only, bodyOf(c)));
    });
  });

  test('a tampered body is rejected', () => {
    eachCase(BOLT.cases, (c) => {
      const secrets = [c.active_secret, c.pending_secret];
      const body = bodyOf(c);
      const shorter = body.length > 0 ? body.subarray(0, -1) : Buffer.from('x');
      for (const tampered of [Buffer.concat([body, Buffer.from(' ')]), shorter]) {
        assertRefused('no_match', () => verifyBolt(secrets, c.headers_during_rotation, tampered));
      }
    });
  });

  test('empty, truncated and garbled signatures are rejected', () => {
    eachCase(BOLT.cases, (c) => {
      const [secrets, body] = [[c.active_secret], bodyOf(c)];
      const good = c.headers_active_only['X-Bolt-Hmac-Sha256'];
      const check = (headers) => () => verifyBolt(secrets, headers, body);
      for (const empty of ['', '   ']) {
        const error = assertRefused('missing_header', check({ 'X-Bolt-Hmac-Sha256': empty }));
        assert.equal(error.reason, 'missing signature header X-Bolt-Hmac-Sha256');
      }
      assertRefused('missing_header', check({}));
      assertRefused('missing_header', check({ 'X-Other': good }));
      const tag = Buffer.from(good, 'base64');
      const malformed = [
        good.slice(0, 43), // truncated
        good.slice(0, 10),
        good.replace(/=+$/, ''), // unpadded
        `${good}A`, // too long
        `${good.slice(0, -2)}!=`, // not base64
        'not base64 at all!',
        Buffer.concat([tag, Buffer.alloc(1)]).toString('base64'), // 33 bytes
        tag.subarray(0, 31).toString('base64'), // 31 bytes
      ];
      for (const bad of malformed) {
        const error = assertRefused('malformed_header', check({ 'X-Bolt-Hmac-Sha256': bad }), bad);
        assert.equal(error.reason, 'malformed header X-Bolt-Hmac-Sha256');
      }
      const flipped = Buffer.from(tag);
      flipped[0] ^= 1;
      assertRefused('no_match', check({ 'X-Bolt-Hmac-Sha256': flipped.toString('base64') }));
    });
  });

  test('non-canonical base64 is malformed', () => {
    // The last character before '=' carries 2 unused bits; a set one decodes to the same bytes
    // but is not what the daemon sends.
    const body = Buffer.from('{}');
    const good = boltSign(OTHER, body);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const stray = `${good.slice(0, 42)}${alphabet[alphabet.indexOf(good[42]) | 1]}=`;
    assert.notEqual(stray, good);
    assertRefused('malformed_header', () => verifyBolt([OTHER], { 'X-Bolt-Hmac-Sha256': stray }, body));
  });

  test('a garbled header does not hide a valid one', () => {
    const body = Buffer.from('{"a":1}');
    const good = boltSign(OTHER, body);
    const garbledActive = { 'X-Bolt-Hmac-Sha256': 'garbage', 'X-Bolt-Hmac-Sha256-Pending': good };
    assert.equal(verifyBolt([OTHER], garbledActive, body), 0);
    const garbledPending = { 'X-Bolt-Hmac-Sha256': good, 'X-Bolt-Hmac-Sha256-Pending': 'x' };
    assert.equal(verifyBolt([OTHER], garbledPending, body), 0);
    const error = assertRefused(
      'malformed_header',
      () => verifyBolt([OTHER], { 'X-Bolt-Hmac-Sha256-Pending': '%%%' }, body),
    );
    assert.equal(error.reason, 'malformed header X-Bolt-Hmac-Sha256-Pending');
  });

  test('headers are case-insensitive in any header container', () => {
    const c = BOLT.cases[1];
    const value = c.headers_active_only['X-Bolt-Hmac-Sha256'];
    for (const headers of [
      { 'x-bolt-hmac-sha256': value }, // req.headers
      { 'X-BOLT-HMAC-SHA256': `  ${value} ` },
      { 'x-bolt-hmac-sha256': [value, 'ignored'] }, // req.headersDistinct
      new Headers({ 'X-Bolt-Hmac-Sha256': value }), // fetch
      new Map([['X-Bolt-HMAC-Sha256', value]]),
      [['x-bolt-hmac-sha256', value]],
    ]) {
      assert.equal(verifyBolt([c.active_secret], headers, bodyOf(c)), 0, headers.constructor.name);
    }
  });

  test('the body must be raw bytes', () => {
    const c = BOLT.cases[1];
    const bytes = new Uint8Array(bodyOf(c));
    assert.equal(verifyBolt([c.active_secret], c.headers_active_only, bytes), 0);
    assert.throws(
      () => verifyBolt([c.active_secret], c.headers_active_only, bodyOf(c).toString()),
      TypeError,
    );
  });
});

describe('standard webhooks vectors', () => {
  test('the reference vector verifies with its whsec_ secret', () => {
    const ref = STANDARD.reference_vector;
    const headers = standardHeaders(ref, ref.webhook_signature);
    const now = ref.webhook_timestamp;
    assert.equal(verifyStandard([ref.secret], headers, bodyOf(ref), { now }), 0);
    assert.equal(verifyStandard([OTHER, ref.secret], headers, bodyOf(ref), { now }), 1);
    // Without `now`, the current clock is used and this 2021 delivery is long stale.
    assertRefused('stale_timestamp', () => verifyStandard([ref.secret], headers, bodyOf(ref)));
  });

  test('the whsec_ form is the same key as the hex secret', () => {
    eachCase(STANDARD.cases, (c) => {
      assert.deepEqual(signingKey(c.active_secret_whsec), Buffer.from(c.active_secret));
    });
  });

  test('active-only signature verifies with hex and whsec_ secrets', () => {
    eachCase(STANDARD.cases, (c) => {
      const headers = standardHeaders(c, c.webhook_signature_active_only);
      for (const secret of [c.active_secret, c.active_secret_whsec]) {
        assert.equal(verifyStandard([secret], headers, bodyOf(c), { now: c.webhook_timestamp }), 0);
      }
    });
  });

  test('during a rotation the old or the new secret alone accepts', () => {
    eachCase(STANDARD.cases, (c) => {
      const headers = standardHeaders(c, c.webhook_signature_during_rotation);
      const now = c.webhook_timestamp;
      for (const secret of [c.active_secret, c.active_secret_whsec, c.pending_secret]) {
        assert.equal(verifyStandard([secret], headers, bodyOf(c), { now }), 0);
      }
      const secrets = [OTHER, c.pending_secret, c.active_secret];
      assert.equal(verifyStandard(secrets, headers, bodyOf(c), { now }), 1);
    });
  });

  test('the new secret does not match before the rotation starts', () => {
    eachCase(STANDARD.cases, (c) => {
      const headers = standardHeaders(c, c.webhook_signature_active_only);
      assertRefused('no_match', () =>
        verifyStandard([c.pending_secret], headers, bodyOf(c), { now: c.webhook_timestamp }));
    });
  });

  test('a tampered body, id or timestamp is rejected', () => {
    eachCase(STANDARD.cases, (c) => {
      const secrets = [c.active_secret, c.pending_secret];
      const now = c.webhook_timestamp;
      const headers = standardHeaders(c, c.webhook_signature_during_rotation);
      const body = bodyOf(c);
      const check = (h, b) => () => verifyStandard(secrets, h, b, { now });
      assertRefused('no_match', check(headers, Buffer.concat([body, Buffer.from('\n')])));
      assertRefused('no_match', check({ ...headers, 'webhook-id': `${c.webhook_id}x` }, body));
      assertRefused('no_match', check({ ...headers, 'webhook-timestamp': String(now + 1) }, body));
    });
  });

  test('timestamps outside the tolerance are stale in both directions', () => {
    eachCase(STANDARD.cases, (c) => {
      const ts = c.webhook_timestamp;
      const headers = standardHeaders(c, c.webhook_signature_active_only);
      const check = (options) => () => verifyStandard([c.active_secret], headers, bodyOf(c), options);
      assert.equal(check({ now: ts + 300 })(), 0);
      assert.equal(check({ now: ts - 300 })(), 0);
      for (const now of [ts + 301, ts - 301, 0]) {
        const error = assertRefused('stale_timestamp', check({ now }));
        assert.equal(error.reason, `webhook timestamp ${ts} is outside the tolerance around now (${now})`);
      }
      assert.equal(check({ now: ts + 10, tolerance: 10 })(), 0);
      assertRefused('stale_timestamp', check({ now: ts + 11, tolerance: 10 }));
    });
  });

  test('empty, truncated and garbled signatures are rejected', () => {
    eachCase(STANDARD.cases, (c) => {
      const sig = c.webhook_signature_active_only;
      const check = (signature) => () =>
        verifyStandard([c.active_secret], standardHeaders(c, signature), bodyOf(c), { now: c.webhook_timestamp });
      for (const empty of ['', '  ']) {
        const error = assertRefused('missing_header', check(empty));
        assert.equal(error.reason, 'missing signature header webhook-signature');
      }
      for (const bad of ['v1,', 'v1,short', 'v2,abc', 'v1a,xyz v2,abc', sig.slice(1), sig.slice(0, 46),
        sig.slice(0, -1), `${sig}A`, sig.replace(/=+$/, ''), `v1,${'!'.repeat(44)}`, 'garbage']) {
        const error = assertRefused('malformed_header', check(bad), bad);
        assert.equal(error.reason, 'malformed header webhook-signature');
      }
      // Unknown versions and garbled entries are skipped when a valid one is present.
      assert.equal(check(`v1a,ignored v1,garbage  ${sig}`)(), 0);
      const flipped = `v1,${sig[3] !== 'A' ? 'A' : 'B'}${sig.slice(4)}`;
      assertRefused('no_match', check(flipped));
    });
  });

  test('missing and malformed id and timestamp are rejected', () => {
    const c = STANDARD.cases[0];
    const now = c.webhook_timestamp;
    const full = standardHeaders(c, c.webhook_signature_active_only);
    const check = (headers) => () => verifyStandard([c.active_secret], headers, bodyOf(c), { now });
    for (const name of Object.keys(full)) {
      const { [name]: _, ...without } = full;
      for (const headers of [without, { ...full, [name]: ' ' }]) {
        const error = assertRefused('missing_header', check(headers));
        assert.equal(error.reason, `missing signature header ${name}`);
      }
    }
    for (const ts of ['abc', '+1763942400', '01763942400', '-5', '1.5', '1e9', '99999999999999999999']) {
      const error = assertRefused('malformed_header', check({ ...full, 'webhook-timestamp': ts }), ts);
      assert.equal(error.reason, 'malformed header webhook-timestamp');
    }
  });

  test('headers are case-insensitive', () => {
    const c = STANDARD.cases[1];
    const headers = Object.fromEntries(
      Object.entries(standardHeaders(c, c.webhook_signature_active_only)).map(([k, v]) => [k.toUpperCase(), v]),
    );
    assert.equal(verifyStandard([c.active_secret], headers, bodyOf(c), { now: c.webhook_timestamp }), 0);
  });
});

describe('secrets', () => {
  test('invalid or missing secrets fail loudly', () => {
    const { active_secret: active, headers_active_only: headers } = BOLT.cases[0];
    assert.throws(() => verifyBolt([], headers, Buffer.alloc(0)), /no signing secrets/);
    for (const bad of ['', 'whsec_', 'whsec_!!!', active.toUpperCase(), active.slice(1), `${active}\n`,
      'g'.repeat(64), undefined]) {
      assert.throws(() => verifyBolt([active, bad], headers, Buffer.alloc(0)), (error) => {
        assert.ok(error instanceof TypeError);
        assert.ok(!error.message.includes(active));
        return true;
      }, String(bad));
    }
  });

  test('a single secret string is accepted', () => {
    const c = BOLT.cases[0];
    assert.equal(verifyBolt(c.active_secret, c.headers_active_only, bodyOf(c)), 0);
  });
});

const standardSign = (secret, id, ts, body) =>
  `v1,${createHmac('sha256', secret).update(`${id}.${ts}.`).update(body).digest('base64')}`;

const DELIVERY = {
  'Content-Type': 'application/json',
  'X-Hooksign-Delivery-Id': 'dlv_1',
  'X-Hooksign-Event-Id': 'evt_1',
  'X-Hooksign-Attempt': '1',
};

/**
 * Runs `verify.mjs ARGS` as a real receiver on a free port, calls `check(post)` where
 * `post(body, headers)` resolves to [status, answer, the receiver's log line], then stops it
 * with SIGTERM: it must exit 0 having printed none of `secrets`.
 */
async function withReceiver(args, secrets, check, env = {}) {
  const child = spawn(process.execPath, [SCRIPT, '--port', '0', ...args], {
    env: { ...process.env, HOOKSIGN_VERIFY_SECRETS: '', ...env },
  });
  let errors = '';
  child.stderr.on('data', (chunk) => { errors += chunk; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const lines = [];
  const reader = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async () => {
    const { value, done } = await reader.next();
    assert.ok(!done, `receiver stopped: ${errors}`);
    lines.push(value);
    return JSON.parse(value);
  };
  try {
    const { listening: port } = await nextLine();
    assert.ok(port > 0);
    await check(async (body, headers) => {
      const response = await fetch(`http://127.0.0.1:${port}/webhooks`, { method: 'POST', body, headers });
      return [response.status, await response.json(), await nextLine()];
    });
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, errors);
  for (const output of [...lines, errors]) {
    assert.ok(!secrets.some((secret) => output.includes(secret)), 'a secret was printed');
  }
}

describe('receiver', () => {
  test('accepts signed and refuses forged deliveries', async () => {
    const c = BOLT.cases[1];
    const [old, neu] = [c.active_secret, c.pending_secret];
    await withReceiver(['--scheme', 'bolt', '--secret', old, '--secret', neu], [old, neu], async (post) => {
      const body = bodyOf(c);
      const signed = { ...DELIVERY, ...c.headers_during_rotation };

      let [status, answer, line] = await post(body, signed);
      assert.deepEqual([status, answer], [200, { ok: true, matched: 0, duplicate: false }]);
      assert.equal(line.delivery_id, 'dlv_1');
      assert.deepEqual([line.ok, line.reason, line.scheme], [true, null, 'bolt']);

      [status, answer] = await post(body, { ...signed, 'X-Hooksign-Attempt': '2' });
      assert.deepEqual([status, answer], [200, { ok: true, matched: 0, duplicate: true }]);

      const otherBody = Buffer.from(body.toString().replace('"evt_1"', '"evt_2"'));
      const onlyNew = {
        ...DELIVERY,
        'X-Hooksign-Delivery-Id': 'dlv_2',
        'X-Bolt-Hmac-Sha256': boltSign(OTHER, otherBody),
        'X-Bolt-Hmac-Sha256-Pending': boltSign(neu, otherBody),
      };
      [status, answer] = await post(otherBody, onlyNew);
      assert.deepEqual([status, answer], [200, { ok: true, matched: 1, duplicate: false }]);

      const forged = { ...DELIVERY, 'X-Hooksign-Delivery-Id': 'dlv_3', 'X-Bolt-Hmac-Sha256': boltSign(OTHER, body) };
      [status, answer, line] = await post(body, forged);
      assert.equal(status, 401);
      assert.deepEqual(answer, { ok: false, reason: 'no signature matches any configured secret' });
      assert.deepEqual([line.delivery_id, line.ok, line.status], ['dlv_3', false, 401]);

      [status, answer] = await post(Buffer.concat([body, Buffer.from(' ')]), signed);
      assert.deepEqual([status, answer.ok], [401, false]);

      // A bolt receiver does not look at Standard Webhooks headers, however valid.
      const ts = String(Math.floor(Date.now() / 1000));
      const standard = {
        ...DELIVERY,
        'webhook-id': 'msg_1',
        'webhook-timestamp': ts,
        'webhook-signature': standardSign(neu, 'msg_1', ts, body),
      };
      [status, answer, line] = await post(body, standard);
      assert.deepEqual([status, answer.reason], [401, 'missing signature header X-Bolt-Hmac-Sha256']);
      assert.equal(line.scheme, 'bolt');
    });
  });

  test('a bolt receiver dedupes on the event id in the signed body', async () => {
    const c = BOLT.cases[1]; // its body is an event with "id": "evt_1"
    const [secret, body] = [c.active_secret, bodyOf(c)];
    await withReceiver(['--scheme', 'bolt', '--secret', secret], [secret], async (post) => {
      const signed = { ...DELIVERY, ...c.headers_active_only };
      let [status, answer, line] = await post(body, signed);
      assert.deepEqual([status, answer.duplicate], [200, false]);
      const first = line;
      // A replay under another (unsigned) delivery id is still the same signed event.
      for (const replay of ['dlv_other', ' ']) {
        [status, answer, line] = await post(body, { ...signed, 'X-Hooksign-Delivery-Id': replay });
        assert.deepEqual([status, answer.duplicate], [200, true], replay);
        assert.equal(line.dedupe_id, 'evt_1');
      }
      assert.equal(first.dedupe_id, 'evt_1');
      // Another event under the same delivery id is not a duplicate.
      const other = Buffer.from(body.toString().replace('"evt_1"', '"evt_2"'));
      [status, answer, line] = await post(other, { ...DELIVERY, 'X-Bolt-Hmac-Sha256': boltSign(secret, other) });
      assert.deepEqual([status, answer.duplicate, line.dedupe_id], [200, false, 'evt_2']);
    });
  });

  test('a standard receiver refuses a delivery stripped to its bolt headers', async () => {
    const c = BOLT.cases[1];
    const [secret, body] = [c.active_secret, bodyOf(c)];
    const ts = String(Math.floor(Date.now() / 1000));
    const bolt = c.headers_active_only;
    const standard = {
      'webhook-id': 'evt_1',
      'webhook-timestamp': ts,
      'webhook-signature': standardSign(secret, 'evt_1', ts, body),
    };
    await withReceiver(['--scheme', 'standard', '--secret', secret], [secret], async (post) => {
      let [status, answer, line] = await post(body, { ...DELIVERY, ...bolt, ...standard });
      assert.deepEqual([status, answer], [200, { ok: true, matched: 0, duplicate: false }]);
      const first = line;
      assert.equal(first.scheme, 'standard');
      // The same delivery with its webhook-* headers stripped: the X-Bolt signature is valid,
      // but this receiver only takes Standard Webhooks, whose timestamp bounds replays.
      [status, answer, line] = await post(body, { ...DELIVERY, 'X-Hooksign-Delivery-Id': 'dlv_2', ...bolt });
      assert.deepEqual([status, answer], [401, { ok: false, reason: 'missing signature header webhook-id' }]);
      assert.deepEqual([line.scheme, line.ok], ['standard', false]);
      // A replay under another delivery id is deduplicated on the signed webhook-id.
      [status, answer, line] = await post(body, { ...DELIVERY, 'X-Hooksign-Delivery-Id': 'dlv_3', ...standard });
      assert.deepEqual([status, answer.duplicate], [200, true]);
      assert.deepEqual([first.dedupe_id, line.dedupe_id], ['evt_1', 'evt_1']);
    });
  });

  test('does not start without an explicit scheme', () => {
    const secret = BOLT.cases[0].active_secret;
    for (const scheme of [[], ['--scheme', 'auto'], ['--scheme', 'both']]) {
      const result = spawnSync(process.execPath, [SCRIPT, '--port', '0', '--secret', secret, ...scheme], {
        encoding: 'utf8',
        timeout: 10_000,
      });
      assert.equal(result.error, undefined, `the receiver started with ${scheme.join(' ') || 'no --scheme'}`);
      assert.equal(result.status, 2, result.stderr);
      assert.match(result.stderr, /--scheme/);
      assert.ok(!(result.stderr + result.stdout).includes(secret));
    }
  });

  test('reads secrets from a file or the environment', async () => {
    const c = BOLT.cases[1];
    const [old, neu] = [c.active_secret, c.pending_secret];
    const body = bodyOf(c);
    const onlyNew = {
      ...DELIVERY,
      'X-Bolt-Hmac-Sha256': boltSign(OTHER, body),
      'X-Bolt-Hmac-Sha256-Pending': boltSign(neu, body),
    };
    const dir = mkdtempSync(join(tmpdir(), 'hooksign-'));
    try {
      const path = join(dir, 'secrets.txt');
      writeFileSync(path, `${old}\n${neu}\n`);
      for (const [args, env] of [[['--secret-file', path], {}], [[], { HOOKSIGN_VERIFY_SECRETS: `${old},${neu}` }]]) {
        await withReceiver(['--scheme', 'bolt', ...args], [old, neu], async (post) => {
          const [status, answer] = await post(body, onlyNew);
          assert.deepEqual([status, answer], [200, { ok: true, matched: 1, duplicate: false }]);
        }, env);
      }
    } finally {
      rmSync(dir, { recursive: true });
    }
    for (const args of [['--secret-file', join(dir, 'no-such-file')], []]) {
      const result = spawnSync(process.execPath, [SCRIPT, '--port', '0', '--scheme', 'bolt', ...args], {
        encoding: 'utf8',
        timeout: 10_000,
        env: { ...process.env, HOOKSIGN_VERIFY_SECRETS: '' },
      });
      assert.equal(result.status, 2, result.stderr);
      assert.match(result.stderr, /secret/);
    }
  });

  test('--help says a secret on the command line is visible to other users', () => {
    const result = spawnSync(process.execPath, [SCRIPT, '--help'], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(result.status, 0, result.stderr);
    const text = result.stdout.split(/\s+/).join(' ');
    for (const expected of ['--secret-file', '$HOOKSIGN_VERIFY_SECRETS', 'VISIBLE TO OTHER USERS (ps, /proc)']) {
      assert.ok(text.includes(expected), expected);
    }
  });

  test('refuses to start with an invalid secret', () => {
    const result = spawnSync(process.execPath, [SCRIPT, '--port', '0', '--scheme', 'bolt', '--secret', 'not-a-secret'], {
      encoding: 'utf8',
      timeout: 10_000,
      env: { ...process.env, HOOKSIGN_VERIFY_SECRETS: '' },
    });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /invalid signing secret/);
    assert.ok(!(result.stderr + result.stdout).includes('not-a-secret'));
  });
});
