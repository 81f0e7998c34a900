#!/usr/bin/env bash
# make demo: moto (S3 + SQS) and the MoEngage emulator on loopback, a sample export uploaded,
# the function run under `cargo lambda watch` and invoked with events/s3-put.json, a readable
# summary printed. Everything started here is stopped on exit, success or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
VENV="$(realpath "$VENV")"
WORK=.demo
rm -rf "$WORK" && mkdir -p "$WORK"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        # Each was started in its own process group: stop the group (cargo lambda watch has children).
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # host port seconds
    for _ in $(seq 1 $(($3 * 10))); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "demo: nothing listening on $1:$2 after $3 s" >&2
    return 1
}

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
BUCKET=moengage-sync-demo
KEY="exports/users/users sample.csv.gz"   # events/s3-put.json names it URL-encoded

echo "demo: starting moto (S3 + SQS)"
MOTO_PORT=$(free_port)
setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$MOTO_PORT" 30
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"

echo "demo: starting the MoEngage emulator"
setsid target/debug/moengage-emulator --workspace-id DEMO_WORKSPACE --api-key demo-data-api-key \
    --port-file "$WORK/emulator.port" >"$WORK/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [[ -s "$WORK/emulator.port" ]] && break; sleep 0.1; done
EMULATOR_URL="http://127.0.0.1:$(cat "$WORK/emulator.port")"

echo "demo: creating bucket, dead-letter queue and uploading s3://$BUCKET/$KEY"
DLQ_URL=$("$VENV/bin/python" scripts/demo_aws.py setup "$BUCKET" "$KEY")

echo "demo: starting cargo lambda watch"
WATCH_PORT=$(free_port)
export PATH="$VENV/bin:$PATH"
env MOENGAGE_DATA_CENTER=DC-01 MOENGAGE_WORKSPACE_ID=DEMO_WORKSPACE MOENGAGE_API_KEY=demo-data-api-key \
    MOENGAGE_API_URL="$EMULATOR_URL" OBJECT_TYPE=bulk_import PRIMARY_KEY=user_id \
    FIELD_MAPPING='{"customer_id":"user_id","email":"email","first_name":"first_name","last_name":"last_name","city":"city","country":"country","plan":"plan","signup_date":{"column":"signup_date","type":"date"}}' \
    DEAD_LETTER_QUEUE_URL="$DLQ_URL" RUST_LOG=info \
    setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" >"$WORK/watch.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$WATCH_PORT" 60

echo "demo: invoking with events/s3-put.json (the first invoke compiles the function)"
if ! cargo lambda invoke moengage-sync --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" \
        --data-file events/s3-put.json --output-format json >"$WORK/response.json" 2>"$WORK/invoke.err"; then
    echo "demo: the invocation failed:" >&2
    cat "$WORK/invoke.err" >&2
    tail -n 30 "$WORK/watch.log" >&2
    exit 1
fi

echo "demo: invoking again with the same notification (S3 may deliver one twice)"
cargo lambda invoke moengage-sync --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" \
    --data-file events/s3-put.json --output-format json >"$WORK/response-repeat.json" 2>>"$WORK/invoke.err"

"$VENV/bin/python" scripts/demo_aws.py summary "$BUCKET" "$WORK/response.json" "$EMULATOR_URL" "$DLQ_URL" "$WORK/response-repeat.json"
echo "demo: logs are in $WORK/; stopping moto, the emulator and cargo lambda watch"
