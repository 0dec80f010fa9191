#!/usr/bin/env bash
# Fuzzes the admin API against its own OpenAPI document with schemathesis (every check), once
# with a merchant's test key and once with the operator key. Any failure fails the step.
#
# The daemon runs on a loopback port in a throwaway data directory. It must never send a
# delivery or a test ping anywhere: fuzzed endpoint URLs name random hosts. So every outbound
# request goes through `delivery.egress_proxy`, set to a closed loopback port; with an egress
# proxy the daemon resolves no endpoint host and connects only to the proxy (see
# src/delivery/sender.rs, `build_client`), so every attempt fails with a connection error.
#
# Environment: HOOKSIGN_BIN (default target/debug/hooksign, built by `cargo test`),
# ST_MAX_EXAMPLES (default 40), ST_MAX_TIME (seconds for the merchant run, default 150; the
# operator run, which only reaches the merchant routes, gets a third of it). With CI=true a
# missing python3, venv or pip fails the step; elsewhere it is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
VENV=target/schemathesis-venv
BIN=${HOOKSIGN_BIN:-target/debug/hooksign}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-40}
MAX_TIME=${ST_MAX_TIME:-150}

unavailable() {
  if [ "${CI:-}" = "true" ]; then
    echo "schemathesis: $1 (required when CI=true)" >&2
    exit 1
  fi
  echo "schemathesis: $1; skipping the fuzz step (CI=true makes this an error)" >&2
  exit 0
}

command -v python3 >/dev/null || unavailable "python3 is not installed"
[ -x "$BIN" ] || { echo "schemathesis: $BIN is missing; run cargo test (or cargo build) first" >&2; exit 1; }

if ! "$VENV/bin/st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" || unavailable "python3 -m venv failed (install python3-venv)"
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || unavailable "pip is missing from the virtual environment"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

DATA=$(mktemp -d)
DAEMON=
cleanup() {
  if [ -n "$DAEMON" ]; then
    kill "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"

# Rate limits raised so 429s do not hide every other answer; nothing else about the API is
# changed. Port 9 (discard) is closed on CI machines: the proxy refuses every connection.
HOOKSIGN_DATA_DIR="$DATA" \
HOOKSIGN_DATABASE__URL="sqlite://$DATA/hooksign.db" \
HOOKSIGN_LISTEN="127.0.0.1:$PORT" \
HOOKSIGN_DELIVERY__EGRESS_PROXY="http://127.0.0.1:9" \
HOOKSIGN_DELIVERY__ALLOW_PRIVATE_NETWORKS=false \
HOOKSIGN_AUTH__RATE_PER_SEC=100000 \
HOOKSIGN_AUTH__BURST=100000 \
HOOKSIGN_AUTH__FAILED_AUTH_PER_MINUTE=1000000 \
HOOKSIGN_LOG__FILTER=warn \
  "$BIN" serve >"$DATA/daemon.log" 2>&1 &
DAEMON=$!

for _ in $(seq 1 100); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$DAEMON" 2>/dev/null || { cat "$DATA/daemon.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$BASE/healthz" >/dev/null

OPERATOR_KEY=$(cat "$DATA/operator.key")
# The merchant's test-mode key: its token, and its id for the hooks (see schemathesis_hooks.py).
read -r TEST_KEY TEST_KEY_ID < <(curl -fsS -X POST "$BASE/v1/merchants" \
    -H "Authorization: Bearer $OPERATOR_KEY" -H 'Content-Type: application/json' \
    -d '{"name":"schemathesis"}' |
  "$VENV/bin/python" -c 'import json, sys; k = next(k for k in json.load(sys.stdin)["api_keys"] if not k["livemode"]); print(k["token"], k["id"])')
[ -n "$TEST_KEY" ] && [ -n "$TEST_KEY_ID" ]

status=0
for who in merchant operator; do
  if [ "$who" = merchant ]; then
    token=$TEST_KEY seconds=$MAX_TIME
  else
    token=$OPERATOR_KEY seconds=$((MAX_TIME / 3 + 1))
  fi
  echo "=== schemathesis with the $who key"
  HOOKSIGN_ST_TOKEN="$token" HOOKSIGN_ST_KEY_ID="$TEST_KEY_ID" \
    "$VENV/bin/st" --config-file .ci/schemathesis.toml run "$BASE/openapi.json" \
    --checks all --max-examples "$MAX_EXAMPLES" --max-time "$seconds" \
    --generation-database none \
    ${ST_SEED:+--seed "$ST_SEED"} --no-color ${ST_EXTRA_ARGS:-} || status=1
done

if ! kill -0 "$DAEMON" 2>/dev/null; then
  echo "schemathesis: the daemon died during the run" >&2
  status=1
fi
if [ "$status" != 0 ]; then
  cp "$DATA/daemon.log" target/schemathesis-daemon.log
  echo "=== the daemon's log (warnings and errors; all of it in target/schemathesis-daemon.log), last 100 lines" >&2
  tail -n 100 "$DATA/daemon.log" >&2
fi
exit $status
