#!/usr/bin/env bash
# Side-by-side load benchmark (issue 9): in ONE run, on loopback, the same origin behind
#   S0  nothing (load generator -> origin directly)
#   S1  nginx (Debian package, 1 worker, upstream keep-alive, access log off)
#   S2  Portcullis, every feature off (1 proxy thread, access log off, level warn)
#   S2b a bare Pingora 0.9.1 passthrough (benches/src/bin/passthrough.rs): the framework's floor
#   S3  Portcullis with the shipped default rules (config/rules/)
#   S4  (later) S3 plus PII scanning on 1/16/64 KiB JSON responses
# For each: max throughput (wrk, closed loop), proxy CPU µs per request (/proc/<pid>/stat
# utime+stime over the wrk run / requests completed), peak RSS (VmHWM), and open-loop latency
# p50/p99/p99.9 at a fixed rate with latency correction (oha). Every measurement is repeated
# (3×, scenarios interleaved) and the median reported, with ratios to S0 and S1.
# The proxy is pinned to core 1, the load generator and the origin to core 0.
#
# Usage: benches/load/run.sh [--quick] [--keep-tmp]
#   --quick     1 repetition, short runs (< 2 minutes once everything is built)
#   --keep-tmp  keep the scratch directory (configs, logs, raw outputs)
# Environment overrides: CONNS (50), RATE (open-loop requests/s, 2000), BODY_BYTES (256),
#   WRK_SECS, OHA_SECS, WARMUP_SECS, REPS, CARGO_TARGET_DIR.
# Output: a Markdown table on stdout and in benches/load/results/latest.md, and
#   benches/load/results/latest.json.
set -euo pipefail

QUICK=0
KEEP_TMP=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --keep-tmp) KEEP_TMP=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

if [[ $QUICK == 1 ]]; then
    : "${REPS:=1}" "${WRK_SECS:=4}" "${OHA_SECS:=4}" "${WARMUP_SECS:=1}"
else
    : "${REPS:=3}" "${WRK_SECS:=12}" "${OHA_SECS:=12}" "${WARMUP_SECS:=2}"
fi
: "${CONNS:=50}" "${RATE:=2000}" "${BODY_BYTES:=256}"
LOAD_CPU=0  # load generator + origin
PROXY_CPU=1 # the proxy under test

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOAD_DIR=$ROOT/benches/load
RESULTS=$LOAD_DIR/results
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

log() { printf '[load %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Install and build what we need (idempotent).
# ---------------------------------------------------------------------------------------------
install_tools() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v taskset >/dev/null || missing+=(util-linux)
    if ((${#missing[@]})); then
        local sudo=()
        [[ $(id -u) == 0 ]] || sudo=(sudo)
        log "installing with apt-get: ${missing[*]}"
        if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
            "${sudo[@]}" apt-get update >&2
            DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2
        fi
    fi
    if ! command -v oha >/dev/null; then
        log "installing oha: cargo install oha --locked (first time only, a few minutes)"
        cargo install oha --locked >&2
    fi
}

build() {
    log "building: cargo build --release -p portcullis -p portcullis-benches --bins"
    cargo build --manifest-path "$ROOT/Cargo.toml" --release -p portcullis -p portcullis-benches --bins >&2
    PORTCULLIS=$TARGET_DIR/release/portcullis
    PASSTHROUGH=$TARGET_DIR/release/passthrough
    ORIGIN=$TARGET_DIR/release/origin
    for b in "$PORTCULLIS" "$PASSTHROUGH" "$ORIGIN"; do
        [[ -x $b ]] || die "missing binary $b"
    done
}

# ---------------------------------------------------------------------------------------------
# Processes: everything started is tracked and stopped on exit.
# ---------------------------------------------------------------------------------------------
PIDS=()
TMP=""
cleanup() {
    local rc=$?
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid" TERM
    done
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_TMP == 1 || $rc != 0 ]]; then
            log "scratch directory kept: $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

alive() { kill -0 "$1" 2>/dev/null; }

# stop_pid PID SIGNAL: signal, wait up to 3 s, then SIGKILL; reaps it; forgets it.
stop_pid() {
    local pid=$1 sig=$2 i
    if alive "$pid"; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < 30; i++)); do
            alive "$pid" || break
            # A zombie child of ours counts as gone once reaped.
            [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
            sleep 0.1
        done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=(${keep[@]+"${keep[@]}"})
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for FILE REGEX SECONDS PID: until FILE has a line matching REGEX (prints it).
wait_for_line() {
    local file=$1 re=$2 secs=$3 pid=$4 i line
    for ((i = 0; i < secs * 20; i++)); do
        line=$(grep -m1 -E "$re" "$file" 2>/dev/null || true)
        if [[ -n $line ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        alive "$pid" || die "process $pid exited before printing /$re/ (see $file)"
        sleep 0.05
    done
    die "no /$re/ in $file after ${secs}s"
}

# wait_http ADDR PID: until GET / through ADDR answers 200 with the full body.
wait_http() {
    local addr=$1 pid=$2 i out
    for ((i = 0; i < 300; i++)); do
        out=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://$addr/" 2>/dev/null || true)
        if [[ $out == "200 $BODY_BYTES" ]]; then return 0; fi
        alive "$pid" || die "process $pid exited (listening on $addr)"
        sleep 0.1
    done
    die "http://$addr/ did not answer 200 with $BODY_BYTES bytes within 30 s (last: '$out')"
}

# Sum of utime+stime (clock ticks) of the given pids.
cpu_ticks() {
    local total=0 pid t
    for pid in "$@"; do
        # Fields after "(comm) ": 1 = state, 12 = utime, 13 = stime.
        t=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
        total=$((total + t))
    done
    echo "$total"
}

vm_hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

children_of() { pgrep -P "$1" || true; }

# ---------------------------------------------------------------------------------------------
# The origin and the proxies. Each start_* sets TARGET_ADDR (where the load goes), PROXY_PID
# (the process whose CPU is counted; empty for S0) and RSS_PID (whose VmHWM is reported).
# ---------------------------------------------------------------------------------------------
start_origin() {
    taskset -c "$LOAD_CPU" "$ORIGIN" --listen 127.0.0.1:0 --body-bytes "$BODY_BYTES" \
        >"$TMP/origin.out" 2>"$TMP/origin.err" &
    ORIGIN_PID=$!
    PIDS+=("$ORIGIN_PID")
    local line
    line=$(wait_for_line "$TMP/origin.out" '^listening ' 10 "$ORIGIN_PID")
    ORIGIN_ADDR=${line#listening }
    wait_http "$ORIGIN_ADDR" "$ORIGIN_PID"
    log "origin on $ORIGIN_ADDR (pid $ORIGIN_PID, $BODY_BYTES-byte body)"
}

start_S0() {
    TARGET_ADDR=$ORIGIN_ADDR
    PROXY_PID=""
    RSS_PID=""
    STOP_SIG=""
}

start_S1() {
    local port dir=$TMP/nginx
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
# Generated by benches/load/run.sh: nginx as the peer proxy (S1).
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
$([[ $(id -u) == 0 ]] && echo "user root;")
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream origin {
        server $ORIGIN_ADDR;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    taskset -c "$PROXY_CPU" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/stdout" 2>"$dir/stderr" &
    local master=$!
    PIDS+=("$master")
    TARGET_ADDR=127.0.0.1:$port
    wait_http "$TARGET_ADDR" "$master"
    local workers
    workers=$(children_of "$master")
    [[ -n $workers ]] || die "nginx master $master has no worker"
    # CPU: master + worker (the master is idle); RSS: the worker (the master's pages are mostly
    # shared with it by fork).
    PROXY_PID="$master $workers"
    RSS_PID=$(echo "$workers" | head -n1)
    STOP_PID=$master
    STOP_SIG=TERM
}

# Portcullis with the rule files of $2 (S2: an empty rule set; S3: the shipped config/rules/).
start_portcullis() {
    local name=$1 rules_src=$2
    local dir=$TMP/portcullis-$name
    mkdir -p "$dir/state" "$dir/rules"
    if [[ -n $rules_src ]]; then
        cp "$rules_src"/*.yaml "$dir/rules/"
    else
        echo "version: 1" >"$dir/rules/empty.yaml"
    fi
    cat >"$dir/gateway.yaml" <<EOF
# Generated by benches/load/run.sh: Portcullis, scenario $name.
version: 1
listen: { proxy: "127.0.0.1:0", control: "127.0.0.1:0" }
state_dir: $dir/state
rules: { dir: $dir/rules }
server:
  threads: 1
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
  pid_file: $dir/portcullis.pid
  upgrade_sock: $dir/upgrade.sock
upstreams:
  origin:
    backends: ["$ORIGIN_ADDR"]
routes:
  - { id: all, path_prefix: /, upstream: origin }
logging:
  # warn, but keep the one "listening" line (info, target portcullis::server) we read the port from.
  level: "warn,portcullis::server=info"
  access_log: false
EOF
    "$PORTCULLIS" validate --config "$dir/gateway.yaml" >"$dir/validate.out" 2>&1 ||
        die "generated config does not validate: $(cat "$dir/validate.out")"
    taskset -c "$PROXY_CPU" "$PORTCULLIS" run --config "$dir/gateway.yaml" >"$dir/stdout" 2>"$dir/stderr" &
    local pid=$!
    PIDS+=("$pid")
    local line
    line=$(wait_for_line "$dir/stdout" '"message":"listening"' 30 "$pid")
    TARGET_ADDR=$(sed -n 's/.*"proxy_addr":"\([^"]*\)".*/\1/p' <<<"$line")
    [[ -n $TARGET_ADDR ]] || die "no proxy_addr in: $line"
    wait_http "$TARGET_ADDR" "$pid"
    PROXY_PID=$pid
    RSS_PID=$pid
    STOP_PID=$pid
    STOP_SIG=INT
}

start_S2() { start_portcullis S2 ""; }

# S3: the shipped default rules (today: the firewall rule set and the event pipeline; tenant
# check, rate limits, webhook verification and kill-switch lookups join as they land). Same
# logging as S2, so S3 − S2 is the cost of the rules alone.
start_S3() { start_portcullis S3 "$ROOT/config/rules"; }

start_S2b() {
    local port dir=$TMP/passthrough
    port=$(free_port)
    mkdir -p "$dir"
    taskset -c "$PROXY_CPU" "$PASSTHROUGH" --listen "127.0.0.1:$port" --upstream "$ORIGIN_ADDR" \
        >"$dir/stdout" 2>"$dir/stderr" &
    local pid=$!
    PIDS+=("$pid")
    TARGET_ADDR=127.0.0.1:$port
    wait_http "$TARGET_ADDR" "$pid"
    PROXY_PID=$pid
    RSS_PID=$pid
    STOP_PID=$pid
    STOP_SIG=INT
}

# ---- S4: add here when PII scanning lands -------------------------------------------------------
# start_S4: S3 plus PII scanning; run it once per body size (1 KiB, 16 KiB, 64 KiB: restart the
#   origin with --body-bytes) as S4-1k, S4-16k, S4-64k, and compare with S3 at the same size.
# report.py already lists S4 as a "not measured yet" row.
# -----------------------------------------------------------------------------------------------
SCENARIOS=(S0 S1 S2 S2b S3)

# ---------------------------------------------------------------------------------------------
# One measurement of one scenario: warm-up, wrk (throughput + CPU), oha (latency), VmHWM.
# ---------------------------------------------------------------------------------------------
measure() {
    local scen=$1 rep=$2
    local out=$TMP/$scen.$rep
    "start_$scen"
    local url="http://$TARGET_ADDR/"

    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP_SECS}s" "$url" >"$out.warmup" 2>&1

    local p0 o0 p1 o1 t0 t1
    local proxy_pids=()
    [[ -n $PROXY_PID ]] && read -r -a proxy_pids <<<"$PROXY_PID"
    p0=$( ((${#proxy_pids[@]})) && cpu_ticks "${proxy_pids[@]}" || echo 0)
    o0=$(cpu_ticks "$ORIGIN_PID")
    t0=$(date +%s.%N)
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WRK_SECS}s" --latency "$url" >"$out.wrk" 2>&1
    t1=$(date +%s.%N)
    p1=$( ((${#proxy_pids[@]})) && cpu_ticks "${proxy_pids[@]}" || echo 0)
    o1=$(cpu_ticks "$ORIGIN_PID")

    taskset -c "$LOAD_CPU" oha --no-tui --output-format json -w -z "${OHA_SECS}s" -c "$CONNS" -q "$RATE" \
        --latency-correction "$url" >"$out.oha.json" 2>"$out.oha.err" ||
        die "oha failed for $scen: $(cat "$out.oha.err")"

    local rss=""
    [[ -n $RSS_PID ]] && rss=$(vm_hwm_kib "$RSS_PID")

    python3 "$LOAD_DIR/report.py" record --scenario "$scen" --rep "$rep" \
        --wrk "$out.wrk" --oha "$out.oha.json" --clk-tck "$CLK_TCK" \
        --proxy-ticks "$((p1 - p0))" --origin-ticks "$((o1 - o0))" --has-proxy "$([[ -n $PROXY_PID ]] && echo 1 || echo 0)" \
        --wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" --rss-kib "${rss:-}" >>"$TMP/raw.jsonl"
    tail -n1 "$TMP/raw.jsonl" | python3 "$LOAD_DIR/report.py" brief >&2

    if [[ -n $STOP_SIG ]]; then
        stop_pid "$STOP_PID" "$STOP_SIG"
    fi
}

facts() {
    python3 - "$@" <<'EOF'
import json, sys
keys = ["nproc", "cpu_model", "kernel", "rustc", "nginx", "wrk", "oha", "git_rev", "date",
        "loadavg_start", "mode", "reps", "wrk_secs", "oha_secs", "warmup_secs", "conns", "rate",
        "body_bytes"]
print(json.dumps(dict(zip(keys, sys.argv[1:]))))
EOF
}

main() {
    [[ $(uname -s) == Linux ]] || die "Linux only (/proc, taskset)"
    install_tools
    build
    local ncpu
    ncpu=$(nproc)
    ((ncpu >= 2)) || die "needs 2 cores (proxy on core $PROXY_CPU, load on core $LOAD_CPU)"
    CLK_TCK=$(getconf CLK_TCK)
    TMP=$(mktemp -d /tmp/portcullis-load.XXXXXX)
    mkdir -p "$RESULTS"
    : >"$TMP/raw.jsonl"

    facts "$ncpu" \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
        "$(uname -sr)" \
        "$(rustc --version)" \
        "$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
        "$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}' || true)" \
        "$(oha --version)" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$([[ $QUICK == 1 ]] && echo quick || echo full)" \
        "$REPS" "$WRK_SECS" "$OHA_SECS" "$WARMUP_SECS" "$CONNS" "$RATE" "$BODY_BYTES" >"$TMP/facts.json"

    log "scenarios ${SCENARIOS[*]}, $REPS repetition(s): wrk -c$CONNS ${WRK_SECS}s, oha -q $RATE ${OHA_SECS}s"
    start_origin
    local rep scen
    for ((rep = 1; rep <= REPS; rep++)); do
        for scen in "${SCENARIOS[@]}"; do
            log "rep $rep/$REPS: $scen"
            measure "$scen" "$rep"
        done
    done

    python3 "$LOAD_DIR/report.py" report --facts "$TMP/facts.json" --raw "$TMP/raw.jsonl" \
        --loadavg-end "$(cut -d' ' -f1-3 /proc/loadavg)" \
        --md "$RESULTS/latest.md" --json "$RESULTS/latest.json"
    cat "$RESULTS/latest.md"
    log "written: $RESULTS/latest.md, $RESULTS/latest.json"
}

main
