#!/usr/bin/env bash
# The README walkthrough as a script: every command a user would type, printed with its output.
#
#   cargo build && cargo build --example receiver
#   bash examples/walkthrough.sh [WORKDIR]
#
# In WORKDIR (default: a new temporary directory) it starts the daemon on SQLite on a free port,
# creates a merchant and an API key, starts the example receiver with the merchant's signing
# secret, points an endpoint at it, sends an event and waits until it is delivered, rotates the
# secret (initiate, complete, revert), lists the keys and stops the daemon. Any failing step
# stops the script with a non-zero exit.
#
# HOOKSIGN_BIN   the daemon (default target/debug/hooksign)
# RECEIVER_BIN   the Rust example receiver (default: examples/receiver next to HOOKSIGN_BIN;
#                examples/python/verify.py when that is not built)
# Needs curl and python3 (python3 reads the JSON answers; jq would do as well).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
absolute() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
HOOKSIGN_BIN=$(absolute "${HOOKSIGN_BIN:-$ROOT/target/debug/hooksign}")
RECEIVER_BIN=$(absolute "${RECEIVER_BIN:-$(dirname "$HOOKSIGN_BIN")/examples/receiver}")
if [[ -x $RECEIVER_BIN ]]; then
  RECEIVER=("$RECEIVER_BIN")
else
  RECEIVER=(python3 "$ROOT/examples/python/verify.py")
fi
[[ -x $HOOKSIGN_BIN ]] || { echo "no hooksign binary at $HOOKSIGN_BIN (cargo build?)" >&2; exit 1; }

WORKDIR=${1:-$(mktemp -d)}
cd "$WORKDIR"
DAEMON_PID='' RECEIVER_PID=''
stop_all() {
  for pid in $RECEIVER_PID $DAEMON_PID; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

# run 'COMMAND': prints the command as typed, runs it, prints its output and keeps it in $OUT.
run() {
  printf '\n$ %s\n' "$1"
  if ! OUT=$(eval "$1"); then
    printf '%s\n' "$OUT"
    echo "walkthrough: this step failed: $1" >&2
    exit 1
  fi
  printf '%s\n' "$OUT"
}
# keep NAME 'PYTHON EXPRESSION': sets $NAME to a field of the last output (parsed as `d`).
keep() {
  local value
  value=$(printf '%s' "$OUT" |
    python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$2")
  printf -v "$1" '%s' "$value"
  printf '# %s=%s\n' "$1" "$value"
}
say() { printf '\n# --- %s\n' "$*"; }

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
API=http://127.0.0.1:$PORT

say "Working in $WORKDIR. Start the daemon (SQLite in ./hooksign-data) on a free port;"
echo "#     endpoints on loopback are refused unless allowed."
echo "\$ API=$API"
echo "\$ HOOKSIGN_DELIVERY__ALLOW_PRIVATE_NETWORKS=true hooksign serve --listen 127.0.0.1:$PORT > hooksign.log 2>&1 &"
HOOKSIGN_DELIVERY__ALLOW_PRIVATE_NETWORKS=true "$HOOKSIGN_BIN" serve --listen "127.0.0.1:$PORT" >hooksign.log 2>&1 &
DAEMON_PID=$!
echo '$ DAEMON_PID=$!'
for _ in $(seq 1 300); do
  curl -sf "$API/readyz" >/dev/null 2>&1 && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { cat hooksign.log >&2; echo "walkthrough: the daemon exited" >&2; exit 1; }
  sleep 0.1
done
run 'curl -sS --fail-with-body $API/readyz'
echo '$ OP=$(cat hooksign-data/operator.key)      # the operator key, created on first start'
OP=$(cat hooksign-data/operator.key)

say "Create a merchant (the operator's job). Its first API keys are shown only now."
run 'curl -sS --fail-with-body -X POST $API/v1/merchants -H "Authorization: Bearer $OP" -H "Content-Type: application/json" -d "{\"name\": \"Acme Payments\"}"'
keep MCH 'd["id"]'
keep K '[k["token"] for k in d["api_keys"] if k["mode"] == "test"][0]'
run 'curl -sS --fail-with-body $API/v1/merchants/$MCH -H "X-Api-Key: $OP"'

say "As the merchant's admin, with the test key: create an API key (its token is shown once)."
run 'curl -sS --fail-with-body -X POST $API/v1/api-keys -H "Authorization: Bearer $K" -H "Content-Type: application/json" -d "{\"name\": \"CI deploys\", \"scopes\": [\"events:write\"]}"'
keep CI_KEY 'd["id"]'

say "Reveal the test-mode signing secret (audited) and start a receiver that trusts it."
run 'curl -sS --fail-with-body -X POST $API/v1/signing-secret/reveal -H "Authorization: Bearer $K"'
keep SECRET 'd["active"]["secret"]'
echo "#     The secret goes in the environment, not in --secret: ps shows arguments to every user."
echo "\$ HOOKSIGN_VERIFY_SECRETS=\$SECRET ${RECEIVER[*]} --scheme bolt --port 0 > receiver.log &"
HOOKSIGN_VERIFY_SECRETS=$SECRET "${RECEIVER[@]}" --scheme bolt --port 0 >receiver.log 2>receiver.err &
RECEIVER_PID=$!
for _ in $(seq 1 300); do
  [[ -s receiver.log ]] && break
  kill -0 "$RECEIVER_PID" 2>/dev/null || { cat receiver.err >&2; echo "walkthrough: the receiver exited" >&2; exit 1; }
  sleep 0.1
done
run 'head -n 1 receiver.log'
keep RECEIVER_PORT 'd["listening"]'

say "Point an endpoint at it (test mode allows http://), and send an event."
run 'curl -sS --fail-with-body -X POST $API/v1/endpoints -H "Authorization: Bearer $K" -H "Content-Type: application/json" -d "{\"url\": \"http://127.0.0.1:$RECEIVER_PORT/webhooks\", \"event_types\": [\"order.*\"]}"'
keep EP 'd["id"]'
run 'curl -sS --fail-with-body -X POST $API/v1/events -H "Authorization: Bearer $K" -H "Content-Type: application/json" -H "Idempotency-Key: order-1-created" -d "{\"type\": \"order.created\", \"payload\": {\"order\": \"ord_1\", \"amount\": 1299}}"'
keep EVT 'd["id"]'

say "The delivery, once the receiver has answered:"
for _ in $(seq 1 300); do
  status=$(curl -sS --fail-with-body "$API/v1/deliveries?event_id=$EVT" -H "Authorization: Bearer $K" |
    python3 -c 'import json, sys; d = json.load(sys.stdin)["data"]; print(d[0]["status"] if d else "")')
  [[ $status == delivered ]] && break
  sleep 0.1
done
run 'curl -sS --fail-with-body "$API/v1/deliveries?event_id=$EVT" -H "Authorization: Bearer $K"'
keep STATUS 'd["data"][0]["status"]'
[[ $STATUS == delivered ]] || { echo "walkthrough: the delivery is $STATUS, not delivered" >&2; exit 1; }
keep DLV 'd["data"][0]["id"]'
run 'curl -sS --fail-with-body $API/v1/deliveries/$DLV -H "Authorization: Bearer $K"'
run 'grep "$DLV" receiver.log'

say "Rotate the signing secret. Initiate shows the new secret once; until complete, deliveries
#     carry both signatures, so the receiver (still on the old secret) accepts the test ping."
run 'curl -sS --fail-with-body $API/v1/signing-secret -H "Authorization: Bearer $K"'
run 'curl -sS --fail-with-body -X POST $API/v1/signing-secret/initiate -H "Authorization: Bearer $K"'
keep NEW_SECRET 'd["pending"]["secret"]'
run 'curl -sS --fail-with-body -X POST $API/v1/endpoints/$EP/test -H "Authorization: Bearer $K"'
keep PING 'd["succeeded"]'
[[ $PING == True ]] || { echo "walkthrough: the receiver refused the test ping" >&2; exit 1; }
run 'curl -sS --fail-with-body -X POST $API/v1/signing-secret/complete -H "Authorization: Bearer $K"'
keep REVERT_UNTIL 'd["previous"]["revert_until"]'
run 'curl -sS --fail-with-body -X POST $API/v1/signing-secret/revert -H "Authorization: Bearer $K"'
run 'curl -sS --fail-with-body $API/v1/signing-secret -H "Authorization: Bearer $K"'

say "List the active API keys."
run 'curl -sS --fail-with-body "$API/v1/api-keys?status=active&sort=name&order=asc" -H "Authorization: Bearer $K"'
keep KEYS '" ".join(k["name"] for k in d["data"])'

say "Stop the daemon: it finishes in-flight work and exits 0."
echo '$ kill -TERM $DAEMON_PID; wait $DAEMON_PID'
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || { echo "walkthrough: the daemon exited with status $?" >&2; exit 1; }
DAEMON_PID=''
echo "hooksign stopped"
echo
echo "walkthrough complete"
