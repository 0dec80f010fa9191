#!/usr/bin/env bash
# Retention on PostgreSQL: native time partitioning (drop whole partitions) against batched
# deletes, measured under an insert flood (issue 15). Self-contained: creates a scratch database
# on 127.0.0.1:5432 (user postgres), runs pgbench floods shaped like hooksign's write path (an
# ingest transaction inserting 10 pending deliveries, then an outcome transaction marking them
# delivered and inserting one attempt each), and drops the database at the end.
#
# Three variants, each for $DURATION seconds with a retention of $RETENTION seconds:
#   none        no pruning (the baseline insert rate; the tables grow)
#   batched     a pruner deleting the oldest finished deliveries and their attempts, 1,000
#               deliveries per transaction, as src/store/retention.rs does
#   batched_vacuum  batched, plus `VACUUM` of both tables every $VACUUM_SECS seconds: what a
#               running autovacuum does (the development server runs with autovacuum = off,
#               which `batched` alone therefore shows: dead rows are never reclaimed)
#   partitions  deliveries and attempts partitioned by created_at ($PART_SECS-second ranges);
#               a pruner creating partitions ahead and dropping the ones past retention
# Each prints: insert rate (pgbench tps x 10 deliveries), PostgreSQL CPU seconds (every
# postgres process, from /proc), table+index size and dead tuples at the end.
#
# Usage: benches/retention_pg.sh [rounds]   (DURATION, RETENTION, PART_SECS, CLIENTS, VARIANTS
#        from the environment)
set -euo pipefail

PG="${PG:-postgres://postgres@127.0.0.1:5432}"
DB=hooksign_retention_bench
DURATION="${DURATION:-120}"
RETENTION="${RETENTION:-30}"
PART_SECS="${PART_SECS:-10}"
CLIENTS="${CLIENTS:-4}"
VACUUM_SECS="${VACUUM_SECS:-10}"
ROUNDS="${1:-1}"
VARIANTS="${VARIANTS:-none batched partitions}"
PGBENCH="$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)"
WORK="$(mktemp -d)"
trap 'psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

q() { psql "$PG/$DB" -qAtX -v ON_ERROR_STOP=1 "$@"; }

# CPU ticks of every postgres process, "pid ticks" per line.
cpu_sample() {
    for stat in /proc/[0-9]*/stat; do
        { read -r line <"$stat"; } 2>/dev/null || continue
        case "$line" in *"(postgres)"*) ;; *) continue ;; esac
        set -- ${line#*) }
        echo "${stat//[^0-9]/} $((${12} + ${13}))"
    done
}

schema_plain() {
    q <<'SQL'
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY, event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL, lease_until BIGINT, leased_by TEXT, last_status BIGINT,
    last_error TEXT, delivered_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_merchant ON deliveries (merchant_id, mode, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, id);
CREATE TABLE delivery_attempts (
    id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL, started_at BIGINT NOT NULL, status_code BIGINT, latency_ms BIGINT NOT NULL,
    error_class TEXT, response_body TEXT NOT NULL DEFAULT '', signatures TEXT NOT NULL DEFAULT '');
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, attempt);
SQL
}

# Partitioned: the partition key must be in every unique index, so the primary keys become
# (id, created_at) and the attempts carry their delivery's created_at for the foreign key.
schema_partitioned() {
    q <<'SQL'
CREATE TABLE deliveries (
    id TEXT NOT NULL, event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL, lease_until BIGINT, leased_by TEXT, last_status BIGINT,
    last_error TEXT, delivered_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_merchant ON deliveries (merchant_id, mode, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, id);
CREATE TABLE delivery_attempts (
    id TEXT NOT NULL, delivery_id TEXT NOT NULL, delivery_created_at BIGINT NOT NULL,
    attempt BIGINT NOT NULL, started_at BIGINT NOT NULL, status_code BIGINT, latency_ms BIGINT NOT NULL,
    error_class TEXT, response_body TEXT NOT NULL DEFAULT '', signatures TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (id, delivery_created_at),
    FOREIGN KEY (delivery_id, delivery_created_at) REFERENCES deliveries (id, created_at) ON DELETE CASCADE)
    PARTITION BY RANGE (delivery_created_at);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, attempt);
-- Creates the partitions covering [now - 2 widths, now + 6 widths) and drops those wholly
-- older than the retention.
CREATE PROCEDURE maintain_partitions(width_ms BIGINT, retention_ms BIGINT) LANGUAGE plpgsql
SET lock_timeout = '200ms' AS $$
DECLARE now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
        lo BIGINT; part RECORD;
BEGIN
    lo := (now_ms / width_ms - 2) * width_ms;
    WHILE lo < now_ms + 6 * width_ms LOOP
        IF to_regclass('deliveries_' || lo) IS NULL THEN
            EXECUTE format('CREATE TABLE deliveries_%s PARTITION OF deliveries FOR VALUES FROM (%s) TO (%s)', lo, lo, lo + width_ms);
            EXECUTE format('CREATE TABLE delivery_attempts_%s PARTITION OF delivery_attempts FOR VALUES FROM (%s) TO (%s)', lo, lo, lo + width_ms);
        END IF;
        lo := lo + width_ms;
    END LOOP;
    FOR part IN SELECT substring(c.relname FROM 12)::BIGINT AS lo FROM pg_class c
                WHERE c.relname ~ '^deliveries_[0-9]+$' LOOP
        IF part.lo + width_ms <= now_ms - retention_ms THEN
            -- A referenced partition cannot be dropped while attached: attempts first, then
            -- detach (ACCESS EXCLUSIVE on the parent; CONCURRENTLY is refused in a procedure).
            -- The flood's foreign-key checks take locks in the other order: a deadlock or a
            -- lock timeout leaves the partition for the next call.
            BEGIN
                EXECUTE format('DROP TABLE delivery_attempts_%s', part.lo);
                EXECUTE format('ALTER TABLE deliveries DETACH PARTITION deliveries_%s', part.lo);
                EXECUTE format('DROP TABLE deliveries_%s', part.lo);
            EXCEPTION WHEN deadlock_detected OR lock_not_available THEN
                RAISE NOTICE 'partition % left for the next call: %', part.lo, SQLERRM;
            END;
        END IF;
    END LOOP;
END $$;
SQL
    q -c "CALL maintain_partitions($((PART_SECS * 1000)), $((RETENTION * 1000)))"
}

# The batched pruner of src/store/retention.rs: the oldest finished deliveries in id order
# (ids sort by time, so the primary key bounds the scan), attempts first, 1,000 a transaction,
# a short pause between batches, a 1 s pause when caught up.
create_batched_pruner() {
    q <<'SQL'
CREATE PROCEDURE prune_batched(seconds INT, retention_ms BIGINT, batch INT) LANGUAGE plpgsql AS $$
DECLARE stop_at TIMESTAMPTZ := clock_timestamp() + make_interval(secs => seconds);
        cutoff BIGINT; floor_id TEXT; n BIGINT;
BEGIN
    WHILE clock_timestamp() < stop_at LOOP
        cutoff := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT - retention_ms;
        floor_id := 'dlv_' || lpad(to_hex(cutoff), 12, '0');
        DELETE FROM delivery_attempts WHERE delivery_id IN (
            SELECT id FROM deliveries WHERE id < floor_id AND status = 'delivered' AND updated_at < cutoff
            ORDER BY id LIMIT batch FOR UPDATE SKIP LOCKED);
        DELETE FROM deliveries WHERE id IN (
            SELECT id FROM deliveries WHERE id < floor_id AND status = 'delivered' AND updated_at < cutoff
            ORDER BY id LIMIT batch FOR UPDATE SKIP LOCKED);
        GET DIAGNOSTICS n = ROW_COUNT;
        COMMIT;
        IF n < batch THEN PERFORM pg_sleep(1); ELSE PERFORM pg_sleep(0.01); END IF;
    END LOOP;
END $$;
SQL
}

write_flood_script() {
    local attempts_cols="id, delivery_id, attempt, started_at, status_code, latency_ms, response_body"
    local attempts_vals="'att_' || md5(d.id), d.id, 1, :ms, 200, 12, repeat('x', 200)"
    if [ "$1" = partitions ]; then
        attempts_cols="id, delivery_id, delivery_created_at, attempt, started_at, status_code, latency_ms, response_body"
        attempts_vals="'att_' || md5(d.id), d.id, d.created_at, 1, :ms, 200, 12, repeat('x', 200)"
    fi
    cat >"$WORK/flood.sql" <<SQL
\set k random(1, 2000000000)
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT AS ms \gset
INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, mode, status, attempts, next_attempt_at, created_at, updated_at) SELECT 'dlv_' || lpad(to_hex(:ms), 12, '0') || '_' || :client_id || '_' || :k || '_' || lpad(g::TEXT, 2, '0'), 'evt_' || :k || '_' || g, 'ep_' || (g % 5), 'mch_1', 'live', 'pending', 0, :ms, :ms, :ms FROM generate_series(1, 10) g;
WITH d AS (UPDATE deliveries SET status = 'delivered', attempts = 1, last_status = 200, delivered_at = :ms, updated_at = :ms WHERE id > 'dlv_' || lpad(to_hex(:ms), 12, '0') || '_' || :client_id || '_' || :k || '_' AND id < 'dlv_' || lpad(to_hex(:ms), 12, '0') || '_' || :client_id || '_' || :k || '_~' AND created_at = :ms RETURNING id, created_at) INSERT INTO delivery_attempts ($attempts_cols) SELECT $attempts_vals FROM d;
SQL
}

run_variant() {
    local variant="$1"
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
    if [ "$variant" = partitions ]; then schema_partitioned; else schema_plain; fi
    local vacuum=""
    write_flood_script "$variant"
    cpu_sample >"$WORK/cpu0"
    : >"$WORK/cpu_all"
    local pruner=""
    case "$variant" in
        batched | batched_vacuum)
            create_batched_pruner
            q -c "CALL prune_batched($DURATION, $((RETENTION * 1000)), 1000)" &
            pruner=$!
            if [ "$variant" = batched_vacuum ]; then
                ( end=$((SECONDS + DURATION)); while [ $SECONDS -lt $end ]; do
                    sleep "$VACUUM_SECS"; q -c "VACUUM deliveries, delivery_attempts" || true; done ) &
                vacuum=$!
            fi ;;
        partitions)
            ( end=$((SECONDS + DURATION)); while [ $SECONDS -lt $end ]; do
                q -c "CALL maintain_partitions($((PART_SECS * 1000)), $((RETENTION * 1000)))" 2>>"$WORK/notices" || true
                sleep 1; done ) &
            pruner=$! ;;
    esac
    # Sample CPU once a second so processes that exit (autovacuum workers) are counted too.
    ( while :; do cpu_sample >>"$WORK/cpu_all"; sleep 1; done ) &
    local sampler=$!
    "$PGBENCH" -n -c "$CLIENTS" -j 2 -T "$DURATION" -f "$WORK/flood.sql" "$PG/$DB" >"$WORK/pgbench.out" 2>&1
    if [ -n "$pruner" ]; then wait "$pruner" || true; fi
    if [ -n "$vacuum" ]; then wait "$vacuum" || true; fi
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    cpu_sample >>"$WORK/cpu_all"
    local ticks
    ticks=$(awk 'FNR==NR { start[$1] = $2; next } { last[$1] = $2 } END {
        for (p in last) total += last[p] - (p in start ? start[p] : 0); print total }' "$WORK/cpu0" "$WORK/cpu_all")
    : >"$WORK/cpu_all"
    local tps
    tps=$(awk '/^tps/ { print $3; exit }' "$WORK/pgbench.out")
    q -c "ANALYZE" >/dev/null
    local stats
    stats=$(q -F ' ' -c "SELECT pg_size_pretty(COALESCE(SUM(pg_total_relation_size(c.oid)), 0)),
        COALESCE(SUM(s.n_live_tup), 0), COALESCE(SUM(s.n_dead_tup), 0)
        FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relkind = 'r'")
    if [ -s "$WORK/notices" ]; then
        echo "  partition drops postponed (lock conflicts): $(grep -c 'left for the next call' "$WORK/notices")"
        : >"$WORK/notices"
    fi
    printf '%-10s  inserts/s %8.0f  pg CPU %6.1f s  size+dead: %s (live rows, dead rows)\n' \
        "$variant" "$(echo "$tps * 10" | bc)" "$(echo "$ticks / $(getconf CLK_TCK)" | bc -l)" "$stats"
}

echo "duration ${DURATION}s, retention ${RETENTION}s, partitions of ${PART_SECS}s, $CLIENTS clients, $(nproc) cores, autovacuum $(psql "$PG/postgres" -AtXc 'SHOW autovacuum')"
for _ in $(seq "$ROUNDS"); do
    for variant in $VARIANTS; do run_variant "$variant"; done
done
