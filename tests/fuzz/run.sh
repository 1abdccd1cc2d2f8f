#!/bin/sh
# `make fuzz`: a contract fuzz of the api against its own OpenAPI document.
#
# Runs inside `herald with-postgres` (DATABASE_URL points at a throwaway private PostgreSQL).
# Installs the pinned schemathesis into a virtualenv under target/, starts `herald dev` (api,
# scheduler and worker) on a free port of 127.0.0.1, gives it a project, a key with limits high
# enough not to turn the run into 429s and some data to act on (seed.py), runs schemathesis
# against /v1/openapi.json, and stops herald whatever happens.
#
# FUZZ_MAX_EXAMPLES (cases per operation and phase), FUZZ_SEED and FUZZ_MIN_CASES (a run of
# fewer cases fails, default 10,000) adjust the run; extra arguments go to `schemathesis run`.
set -eu

SCHEMATHESIS_VERSION=4.32.5
HERALD=${HERALD:-target/debug/herald}
WORK=target/fuzz
VENV=target/fuzz-venv
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-350}
MIN_CASES=${FUZZ_MIN_CASES:-10000}
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection

: "${DATABASE_URL:?run through herald with-postgres (make fuzz)}"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

rm -rf "$WORK"
mkdir -p "$WORK"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
HERALD_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
export HERALD_ENCRYPTION_KEY HERALD_DATA_DIR="$WORK" HERALD_LISTEN="127.0.0.1:$port" HERALD_LOG=warn

admin_key=$("$HERALD" projects create fuzz | tail -n 1)

"$HERALD" dev >"$WORK/herald.log" 2>&1 &
herald_pid=$!
stop_herald() {
    kill "$herald_pid" 2>/dev/null || true
    wait "$herald_pid" 2>/dev/null || true
}
trap stop_herald EXIT
trap 'exit 130' INT TERM

tries=0
until curl -fsS "$base/readyz" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ] || ! kill -0 "$herald_pid" 2>/dev/null; then
        echo "fuzz: herald did not become ready; its log:" >&2
        cat "$WORK/herald.log" >&2
        exit 1
    fi
    sleep 0.5
done

# A key that the per-minute and per-day limits do not stop during the run.
fuzz_key=$(curl -fsS -X POST "$base/v1/keys" -H "Authorization: Bearer $admin_key" \
    -H 'content-type: application/json' \
    -d '{"name": "fuzz", "scopes": ["read", "write"], "requests_per_minute": 1000000, "requests_per_day": 100000000}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
python3 tests/fuzz/seed.py "$base" "$fuzz_key" "$WORK/schemathesis.toml"

# Revoking a key: last, and alone. The fuzzer reuses ids it saw in answers, so it revokes the key
# it runs with (GET /v1/keys lists it), and every case after that would meet only a 401.
set +e
# One schemathesis run: the report directory's name, the operation filter and the script's own
# arguments.
fuzz_run() {
    report=$1 filter=$2 operation=$3
    shift 3
    "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "$base/v1/openapi.json" \
        "$filter" "$operation" \
        --checks "$CHECKS" \
        --max-examples "$MAX_EXAMPLES" \
        ${FUZZ_SEED:+--seed "$FUZZ_SEED"} \
        --header "Authorization: Bearer $fuzz_key" \
        --generation-database none \
        --request-timeout 30 \
        --report junit,ndjson --report-dir "$WORK/$report" \
        --no-color \
        "$@"
}
fuzz_run report --exclude-operation-id revokeKey "$@"
status=$?
if ! curl -fsS -o /dev/null "$base/v1/keys" -H "Authorization: Bearer $fuzz_key"; then
    echo "fuzz: the fuzz key stopped working during the run: later cases met only 401s" >&2
    status=1
fi
fuzz_run report-revoke --include-operation-id revokeKey "$@" || status=1
set -e
# Both runs' reports name every case they generated.
cases=$(python3 -c '
import json, sys
print(sum(len(json.loads(line).get("ScenarioFinished", {}).get("recorder", {}).get("cases", {}))
          for path in sys.argv[1:] for line in open(path)))' "$WORK"/report/*.ndjson "$WORK"/report-revoke/*.ndjson)
echo "fuzz: $cases cases, checks $CHECKS"
if [ "$cases" -lt "$MIN_CASES" ]; then
    echo "fuzz: fewer than $MIN_CASES cases; raise FUZZ_MAX_EXAMPLES" >&2
    status=1
fi
if grep -qi panic "$WORK/herald.log"; then
    echo "fuzz: herald panicked; see $WORK/herald.log" >&2
    status=1
fi
exit "$status"
