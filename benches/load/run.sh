#!/usr/bin/env bash
# Side-by-side load benchmark (issue 9): in ONE run, on loopback, the same origin behind
#   S0  nothing (load generator -> origin directly)
#   S1  nginx (Debian package, 1 worker, upstream keep-alive, access log off)
#   S2  Portcullis, every feature off (1 proxy thread, access log off, level warn: the
#       empty-rule baseline; the variant S2:log has the access log on as shipped)
#   S2b a bare Pingora 0.9.1 passthrough (benches/src/bin/passthrough.rs): the framework's floor
#   S2b-mi the same with the gateway's allocator (mimalloc): the floor like for like
#   S3  Portcullis as a user configures it (issue 24): the shipped firewall, identity (JWT) on
#       every API route, tenant scope, per-IP, per-client and per-tenant rate limits, webhook
#       verification (benches/load/rules-s3/), a route with a kill-switch channel; events and
#       metrics on, the access log on as shipped (level info, JSON lines on stdout, to a file)
#   S3-rs  S3's config and rules, the load signed RS256 (2048-bit) by the IdP issuer, each request
#       a token that is not in the gateway's verified-token cache (more tokens than it holds,
#       cycled in order: benches/load/rs256.py, rotate.lua); latency (oha) not measured
#   S3-1k/16k/64k  S3 with 1/16/64 KiB JSON responses
#   S4-1k/16k/64k  S3 plus PII scanning (benches/load/rules-s4/: redact detectors, streamed) at
#       the same sizes; the `held` variant (VARIANT_held below) scans with blocking detectors,
#       the response fetched and held whole by the gateway
#   S5  S3 plus matching at scale (issue 25): a 100k-CIDR feed, 1k more firewall rules, 5k more
#       routes, none matching the load request (not in the default set: SCENARIOS="S3 S5")
# Every scenario gets the same request: GET /api/business/acme/orders with a bearer token and an
# X-Client-Id header (S0-S2b ignore them; S3/S4's rules check them); S3-rs alone changes the token
# on every request.
# For each: max throughput (wrk, closed loop), proxy CPU µs per request (/proc/<pid>/stat
# utime+stime over the wrk run / requests completed), peak RSS (VmHWM), and open-loop latency
# p50/p99/p99.9 at a fixed rate with latency correction (oha), and CPU µs per request over that
# fixed-rate run (every proxy then faces equally idle peers). Every measurement is repeated
# (3×, scenarios interleaved) and the median reported, with ratios to S0 and S1.
# The proxy is pinned to core 1, the load generator and the origin to core 0.
# Any non-2xx answer during a measurement fails the run.
#
# Usage: benches/load/run.sh [--quick] [--keep-tmp] [--profile SCENARIO | --instructions SCENARIO |
#                            --idle-memory "SCENARIOS"]
#   --quick     1 repetition, short runs, body sizes 16 KiB only (a few minutes once built;
#               S3-rs first signs its tokens, ≈ 15-60 s)
#   --keep-tmp  keep the scratch directory (configs, logs, raw outputs)
#   --profile SCENARIO  instead of the benchmark: run SCENARIO (S1, S2, S2b, S3, S3-16k, ...)
#               under wrk and `perf record --call-graph dwarf` its proxy process; writes
#               benches/load/results/profile-SCENARIO.{txt,data}. PERF_SECS (5), PERF_FREQ (1999),
#               PERF_CALLGRAPH (dwarf,32768; "fp" for a build with -C force-frame-pointers=yes).
#   --instructions SCENARIO  instead of the benchmark: run SCENARIO's proxy under callgrind and
#               count user-space instructions per request (deterministic, unlike CPU time on a
#               shared VM): INSTR_REQUESTS (10000) requests at -c 10 after a warm-up; per thread.
#               (oha; S3-rs: rs256.py drive, which sends each request a fresh token)
#   --idle-memory "SCENARIOS"  instead of the benchmark: resident memory per idle keep-alive
#               connection of each scenario's proxy (idle_memory.py; IDLE_CONNS, 1000, twice).
# Environment overrides: CONNS (50), RATE (open-loop requests/s, 2000), BODY_BYTES (256, for
#   S0-S3), SIZES (body sizes of S3-*/S4-*, "1024 16384 65536"; quick "16384"), WRK_SECS,
#   OHA_SECS, WARMUP_SECS, REPS, SCENARIOS (e.g. "S2 S2b": only these), CARGO_TARGET_DIR,
#   PORTCULLIS_BIN / PASSTHROUGH_BIN (measure other builds), PROXY_THREADS (Portcullis's
#   server.threads, 1) and PROXY_CPU (the cores it is pinned to, 1; e.g. VARIANT_t2="PROXY_THREADS=2
#   PROXY_CPU=0,1" for the scaling check), SERVER_EXTRA (one more `server:` key
#   for Portcullis, e.g. "work_stealing: false"), PASSTHROUGH_ARGS (diagnostics), NO_BUILD=1
#   (skip the cargo build: use the binaries already in $CARGO_TARGET_DIR/release).
# Output: a Markdown table on stdout and in benches/load/results/latest.md, and
#   benches/load/results/latest.json.
set -euo pipefail

QUICK=0
KEEP_TMP=0
PROFILE=""
INSTR=""
IDLE=""
while (($#)); do
    arg=$1
    shift
    case "$arg" in
        --quick) QUICK=1 ;;
        --keep-tmp) KEEP_TMP=1 ;;
        --profile)
            PROFILE=${1:?--profile needs a scenario}
            shift
            ;;
        --instructions)
            INSTR=${1:?--instructions needs a scenario}
            shift
            ;;
        --idle-memory)
            IDLE=${1:?--idle-memory needs a list of scenarios, e.g. "S1 S2b-mi S2 S3"}
            shift
            ;;
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
    : "${REPS:=1}" "${WRK_SECS:=4}" "${OHA_SECS:=3}" "${WARMUP_SECS:=1}" "${SIZES:=16384}"
else
    : "${REPS:=3}" "${WRK_SECS:=10}" "${OHA_SECS:=8}" "${WARMUP_SECS:=2}" "${SIZES:=1024 16384 65536}"
fi
: "${CONNS:=50}" "${RATE:=2000}" "${BODY_BYTES:=256}" "${SCENARIOS:=}" "${SERVER_EXTRA:=}" "${PASSTHROUGH_ARGS:=}"
PROXY_WRAP="" # a command the proxy is started under (valgrind, for --instructions)
# The one request every scenario gets (the token is made per run, in main).
REQ_PATH=/api/business/acme/orders
CLIENT_ID=bench-client-1
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
    # S3-rs signs RS256 tokens (rs256.py).
    python3 -c 'import cryptography' 2>/dev/null || missing+=(python3-cryptography)
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
    if [[ ${NO_BUILD:-0} == 1 ]]; then
        log "NO_BUILD=1: using the binaries already in $TARGET_DIR/release"
    else
        log "building: cargo build --release -p portcullis -p portcullis-benches --bins"
        cargo build --manifest-path "$ROOT/Cargo.toml" --release -p portcullis -p portcullis-benches --bins >&2
    fi
    PORTCULLIS=${PORTCULLIS_BIN:-$TARGET_DIR/release/portcullis}
    PASSTHROUGH=${PASSTHROUGH_BIN:-$TARGET_DIR/release/passthrough}
    PASSTHROUGH_MI=${PASSTHROUGH_MI_BIN:-$TARGET_DIR/release/passthrough_mimalloc}
    ORIGIN=$TARGET_DIR/release/origin
    for b in "$PORTCULLIS" "$PASSTHROUGH" "$PASSTHROUGH_MI" "$ORIGIN"; do
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

# The load request's headers, for curl, wrk and oha.
load_headers() { printf '%s\n' -H "Authorization: Bearer $TOKEN" -H "X-Client-Id: $CLIENT_ID"; }

# wrk_load_args SCENARIO: wrk's arguments for the load request: its headers, or for a rotating
# scenario (S3-rs) the X-Client-Id header and rotate.lua, which sets the next token of
# $BENCH_TOKENS on every request.
wrk_load_args() {
    if rotates "$1"; then
        printf '%s\n' -H "X-Client-Id: $CLIENT_ID" -s "$LOAD_DIR/rotate.lua"
    else
        load_headers
    fi
}

# wait_http ADDR PID: until the load request through ADDR answers 200 with the full body.
wait_http() {
    local addr=$1 pid=$2 i out hdrs=()
    mapfile -t hdrs < <(load_headers)
    for ((i = 0; i < 300; i++)); do
        out=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "${hdrs[@]}" "http://$addr$REQ_PATH" 2>/dev/null || true)
        if [[ $out == "200 $CUR_BYTES" ]]; then return 0; fi
        alive "$pid" || die "process $pid exited (listening on $addr)"
        sleep 0.1
    done
    die "http://$addr$REQ_PATH did not answer 200 with $CUR_BYTES bytes within 30 s (last: '$out')"
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
# start_origin BYTES: (re)starts the origin with a BYTES-byte body.
start_origin() {
    CUR_BYTES=$1
    [[ -n ${ORIGIN_PID:-} ]] && stop_pid "$ORIGIN_PID" TERM
    taskset -c "$LOAD_CPU" "$ORIGIN" --listen 127.0.0.1:0 --body-bytes "$CUR_BYTES" \
        >"$TMP/origin.out" 2>"$TMP/origin.err" &
    ORIGIN_PID=$!
    PIDS+=("$ORIGIN_PID")
    local line
    line=$(wait_for_line "$TMP/origin.out" '^listening ' 10 "$ORIGIN_PID")
    ORIGIN_ADDR=${line#listening }
    wait_http "$ORIGIN_ADDR" "$ORIGIN_PID"
    log "origin on $ORIGIN_ADDR (pid $ORIGIN_PID, $CUR_BYTES-byte body)"
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
    # shellcheck disable=SC2086 # PROXY_WRAP: words
    taskset -c "$PROXY_CPU" $PROXY_WRAP nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
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

# portcullis_config NAME RULE_DIR...: writes $TMP/portcullis-NAME/gateway.yaml with a rules
# directory holding the *.yaml (and lists/, keys/) of every RULE_DIR (none: an empty rule set).
# LOG_AS_SHIPPED=1: `logging` as config/gateway.yaml ships it (level info, access log on), else
# level warn and no access log. Prints the directory.
portcullis_config() {
    local name=$1
    shift
    local dir=$TMP/portcullis-$name src
    rm -rf "$dir"
    mkdir -p "$dir/state" "$dir/rules"
    echo "version: 1" >"$dir/rules/00-empty.yaml"
    for src in "$@"; do
        cp "$src"/*.yaml "$dir/rules/"
        if [[ -d $src/lists ]]; then cp -r "$src/lists" "$dir/rules/"; fi
        if [[ -d $src/keys ]]; then cp -r "$src/keys" "$dir/rules/"; fi
    done
    local logging
    if [[ ${LOG_AS_SHIPPED:-0} == 1 ]]; then
        # As shipped: every request one JSON access-log line on stdout (start_portcullis sends
        # stdout to a file, so the write is paid as in a deployment).
        logging='  level: info
  access_log: true'
    else
        # warn, but keep the one "listening" line (info, target portcullis::server) we read the port from.
        logging='  level: "warn,portcullis::server=info"
  access_log: false'
    fi
    cat >"$dir/gateway.yaml" <<YAML
# Generated by benches/load/run.sh: Portcullis, scenario $name.
version: 1
listen: { proxy: "127.0.0.1:0", control: "127.0.0.1:0" }
state_dir: $dir/state
rules: { dir: $dir/rules }
server:
  threads: ${PROXY_THREADS:-1}
${SERVER_EXTRA:+  $SERVER_EXTRA
}  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
  pid_file: $dir/portcullis.pid
  upgrade_sock: $dir/upgrade.sock
upstreams:
  origin:
    backends: ["${ORIGIN_ADDR:-127.0.0.1:9}"]
# The same routes in S2, S3 and S4, so S3 - S2 is the rules alone: the API routes of a real
# deployment (S3's rules put identity on each). The load hits \`business\`, which has a channel:
# the kill-switch lookup runs on every request of the load.
routes:
  - { id: webhooks, path_prefix: /webhooks, upstream: origin }
  - { id: business, path_prefix: /api/business, upstream: origin, channel: orders }
  - { id: admin, path_prefix: /api/admin, upstream: origin }
  - { id: v2, path_prefix: /api/v2, upstream: origin }
  - { id: api, path_prefix: /api, upstream: origin }
  - { id: internal, path_prefix: /internal, upstream: origin }
  - { id: default, path_prefix: /, upstream: origin }
${EXTRA_ROUTES:+$(cat "$EXTRA_ROUTES")
}${FLEET_YAML:+$FLEET_YAML
}logging:
$logging
YAML
    printf '%s\n' "$dir"
}

# fleet_store: with FLEET=1 (a variant, benches/README.md), a redis-server on a free port for
# fleet mode, once per run; sets FLEET_YAML, the `fleet:` section the Portcullis config gets.
fleet_store() {
    FLEET_YAML=""
    [[ ${FLEET:-} == 1 ]] || return 0
    command -v redis-server >/dev/null || die "FLEET=1 needs redis-server (apt-get install redis-server)"
    if [[ -z ${FLEET_PORT:-} ]]; then
        FLEET_PORT=$(free_port)
        redis-server --port "$FLEET_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$TMP/redis.log" 2>&1 &
        PIDS+=("$!")
        local i
        for ((i = 0; i < 100; i++)); do
            redis-cli -p "$FLEET_PORT" PING 2>/dev/null | grep -q PONG && break
            sleep 0.05
        done
    fi
    FLEET_YAML="fleet: { redis_url: \"redis://127.0.0.1:$FLEET_PORT\", id: bench$RANDOM }"
}

# Portcullis with the rules of RULE_DIR... (S2: none; S3: shipped firewall + rules-s3; S4: + rules-s4).
start_portcullis() {
    local name=$1
    shift
    local dir
    fleet_store
    dir=$(portcullis_config "$name" "$@")
    "$PORTCULLIS" validate --config "$dir/gateway.yaml" >"$dir/validate.out" 2>&1 ||
        die "generated config does not validate: $(cat "$dir/validate.out")"
    # shellcheck disable=SC2086 # PROXY_WRAP: words
    taskset -c "$PROXY_CPU" $PROXY_WRAP "$PORTCULLIS" run --config "$dir/gateway.yaml" >"$dir/stdout" 2>"$dir/stderr" &
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

# The shipped firewall (copied from config/rules/ at run time) plus the bench rule set: see
# benches/load/rules-s3/README.md. The shipped rate_limits.yaml (100 per 60 s) would refuse the
# load: rules-s3/rate_limits.yaml has three limits of the same kinds that no run reaches. The
# IdP's public JWKS (keys/, made per run by rs_key) goes in with the firewall.
s3_rule_dirs() {
    mkdir -p "$TMP/shipped"
    cp "$ROOT/config/rules/firewall.yaml" "$TMP/shipped/"
    printf '%s\n' "$TMP/shipped" "$LOAD_DIR/rules-s3"
}

# rs_key: the RS256 identity provider's 2048-bit key pair, once per run: the private key stays in
# $TMP, the public JWKS goes to $TMP/shipped/keys/ (rules-s3/identity.yaml reads it).
rs_key() {
    mkdir -p "$TMP/shipped/keys"
    python3 "$LOAD_DIR/rs256.py" key --private "$TMP/idp.key" --jwks "$TMP/shipped/keys/bench-idp-jwks.json" ||
        die "cannot make the RS256 key (python3 -c 'import cryptography' fails? apt-get install python3-cryptography)"
}

# cache_const NAME: a constant of the gateway's verified-token cache (rules/src/identity/mod.rs),
# read from the source so that S3-rs follows the cache if it grows.
cache_const() {
    local v
    v=$(sed -n "s/^pub const $1: usize = \([0-9_]*\);.*/\1/p" "$ROOT/rules/src/identity/mod.rs")
    [[ -n $v ]] || die "no 'pub const $1' in rules/src/identity/mod.rs"
    echo "${v//_/}"
}

# rs_tokens: once per run, the RS256 tokens of S3-rs in $TMP/rs-tokens.txt (exported as
# BENCH_TOKENS for rotate.lua and rs256.py drive). The cache is CACHE_SHARDS shards of
# CACHE_SHARD_ENTRIES, a full shard emptied: with more distinct tokens per shard than it holds,
# sent in the same cyclic order, a token has always been evicted before it comes round again.
rs_tokens() {
    export BENCH_TOKENS=$TMP/rs-tokens.txt
    [[ -s $BENCH_TOKENS ]] && return 0
    local shards entries
    shards=$(cache_const CACHE_SHARDS)
    entries=$(cache_const CACHE_SHARD_ENTRIES)
    log "S3-rs: signing RS256 tokens, more than the token cache holds ($shards × $entries)"
    python3 "$LOAD_DIR/rs256.py" sign --private "$TMP/idp.key" --out "$BENCH_TOKENS" \
        --shards "$shards" --per-shard "$entries" --procs "$(nproc)" >"$TMP/rs-tokens.log" ||
        die "signing the S3-rs tokens failed"
    log "S3-rs: $(cat "$TMP/rs-tokens.log")"
}

# rotates SCENARIO: does the load send a fresh token per request (S3-rs)?
rotates() { [[ ${1%%:*} == S3-rs ]]; }

start_S2() { start_portcullis S2; }

start_S3() {
    local dirs=()
    mapfile -t dirs < <(s3_rule_dirs)
    # S3_EXTRA_RULES: one more rule directory (e.g. the anomaly variant, benches/README.md).
    LOG_AS_SHIPPED=${LOG_AS_SHIPPED:-1} start_portcullis S3 "${dirs[@]}" ${S3_EXTRA_RULES:+"$S3_EXTRA_RULES"}
    [[ $REP == 1 ]] && check_rules_live S3
    return 0
}

# S3-rs: S3's config and rules; the load (rotate.lua, rs256.py drive) signs with the IdP's RS256
# key, a token the cache does not hold on every request. The checks use one of those tokens.
start_S3-rs() {
    local dirs=()
    rs_tokens
    mapfile -t dirs < <(s3_rule_dirs)
    LOG_AS_SHIPPED=${LOG_AS_SHIPPED:-1} start_portcullis S3-rs "${dirs[@]}" ${S3_EXTRA_RULES:+"$S3_EXTRA_RULES"}
    if [[ $REP == 1 ]]; then
        local saved=$TOKEN
        TOKEN=$(tail -n1 "$BENCH_TOKENS")
        check_rules_live S3-rs
        TOKEN=$saved
    fi
    return 0
}

# S5 (issue 25, matching at scale): S3 plus what large deployments configure — a 100,000-CIDR
# threat feed (a firewall rule's client_ips_file), 1,000 more firewall rules (paths, path
# regexes, user-agent and query regexes), 5,000 more routes (`/svc{i}/api`). None matches the
# load request, which is served exactly as in S3: the difference is the cost of matching.
scale_files() {
    local dir=$TMP/scale
    [[ -f $dir/routes.yaml ]] && return 0
    mkdir -p "$dir/rules/lists"
    python3 - "$dir" <<'PY'
import random, sys
d = sys.argv[1]
rnd = random.Random(25)
with open(f"{d}/rules/lists/feed.txt", "w") as f:
    f.write("; synthetic threat feed: 100,000 CIDRs (none of 127/8, the load's client)\n")
    n = 0
    while n < 100_000:
        a = rnd.randrange(1, 224)
        if a in (10, 127):
            continue
        f.write(f"{a}.{rnd.randrange(256)}.{rnd.randrange(256)}.0/{rnd.choice((24, 24, 28, 32))}\n")
        n += 1
with open(f"{d}/rules/scale.yaml", "w") as f:
    f.write("version: 1\nfirewall:\n  - id: feed\n    match:\n      client_ips_file: lists/feed.txt\n")
    for i in range(1000):
        k = i % 4
        f.write(f"  - id: scale-{i}\n    match:\n")
        if k == 0:
            f.write(f"      paths: [\"/internal{i}\"]\n")
        elif k == 1:
            f.write(f"      path_regex: '^/export{i}/[0-9]+$'\n")
        elif k == 2:
            f.write(f"      headers:\n        user-agent: '(?i)\\bscanner{i}/'\n")
        else:
            f.write(f"      query_regex: '(?i)probe{i}='\n")
with open(f"{d}/routes.yaml", "w") as f:
    for i in range(5000):
        f.write(f"  - {{ id: svc{i}, path_prefix: /svc{i}/api, upstream: origin }}\n")
PY
}

start_S5() {
    local dirs=()
    mapfile -t dirs < <(s3_rule_dirs)
    scale_files
    EXTRA_ROUTES=$TMP/scale/routes.yaml LOG_AS_SHIPPED=${LOG_AS_SHIPPED:-1} start_portcullis S5 "${dirs[@]}" "$TMP/scale/rules"
    [[ $REP == 1 ]] && check_rules_live S5
    return 0
}

start_S4() {
    local dirs=()
    mapfile -t dirs < <(s3_rule_dirs)
    LOG_AS_SHIPPED=${LOG_AS_SHIPPED:-1} start_portcullis S4 "${dirs[@]}" "${S4_RULES:-$LOAD_DIR/rules-s4}"
    [[ $REP == 1 ]] && check_rules_live S4
    return 0
}

# check_rules_live NAME: the rules answer as they should (so the measurement is of rules that run).
check_rules_live() {
    local name=$1 base="http://$TARGET_ADDR" out hdrs=()
    mapfile -t hdrs < <(load_headers)
    expect_status() {
        local want=$1 what=$2
        shift 2
        out=$(curl -s -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || true)
        [[ $out == "$want" ]] || die "$name: $what answered $out, expected $want (rules not live?)"
    }
    # The load request: 200, counted by the rate limits (RateLimit headers), body byte-identical
    # to the origin's (nothing redacted).
    curl -s -D "$TMP/$name.headers" -o "$TMP/$name.body" "${hdrs[@]}" "$base$REQ_PATH" ||
        die "$name: the load request failed"
    grep -qi '^ratelimit:' "$TMP/$name.headers" || die "$name: no RateLimit header: $(cat "$TMP/$name.headers")"
    curl -s -o "$TMP/$name.direct" "http://$ORIGIN_ADDR$REQ_PATH" || die "origin request failed"
    cmp -s "$TMP/$name.body" "$TMP/$name.direct" || die "$name: the body differs from the origin's"
    expect_status 401 "the load request without its token" -H "X-Client-Id: $CLIENT_ID" "$base$REQ_PATH"
    expect_status 403 "another tenant's path" "${hdrs[@]}" "$base/api/business/globex/orders"
    # Identity on every API route; tenant scope on v2 too; /internal takes only the jobs issuer.
    local path
    for path in /api/admin/users /api/v2/tenants/acme/orders /api/reports /internal/jobs; do
        expect_status 401 "$path without a token" -H "X-Client-Id: $CLIENT_ID" "$base$path"
    done
    expect_status 200 "API v2 on the caller's tenant" "${hdrs[@]}" "$base/api/v2/tenants/acme/orders"
    expect_status 403 "API v2 on another tenant" "${hdrs[@]}" "$base/api/v2/tenants/globex/orders"
    expect_status 401 "a user token on /internal" "${hdrs[@]}" "$base/internal/jobs"
    expect_status 200 "a jobs token on /internal" -H "Authorization: Bearer $JOBS_TOKEN" "$base/internal/jobs"
    local body ts sig
    body='{"id":"evt_bench_'$RANDOM$RANDOM'","type":"charge.succeeded","data":{"object":{"amount":4200}}}'
    ts=$(date +%s)
    sig=$(python3 -c 'import hashlib, hmac, os, sys
print(hmac.new(os.environ["PORTCULLIS_BENCH_WEBHOOK_SECRET"].encode(), sys.argv[1].encode(), hashlib.sha256).hexdigest())' "$ts.$body")
    expect_status 200 "a Stripe-signed webhook POST" -X POST -H 'Content-Type: application/json' \
        -H "Stripe-Signature: t=$ts,v1=$sig" --data-binary "$body" "$base/webhooks/stripe/events"
    expect_status 401 "an unsigned webhook POST" -X POST -H 'Content-Type: application/json' \
        --data-binary "$body" "$base/webhooks/stripe/events"
    log "$name: rules live (200 + RateLimit headers, body intact; 401 without token on every API route; 403 cross-tenant (business, v2); /internal: jobs token only; webhook signed 200 / unsigned 401)"
}

start_S2b() {
    local port dir=$TMP/passthrough
    port=$(free_port)
    mkdir -p "$dir"
    # shellcheck disable=SC2086 # PASSTHROUGH_ARGS: words
    taskset -c "$PROXY_CPU" $PROXY_WRAP "$PASSTHROUGH" --listen "127.0.0.1:$port" --upstream "$ORIGIN_ADDR" ${PASSTHROUGH_ARGS:-} \
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

# S2b-mi: the same passthrough with the gateway's allocator (mimalloc), the floor like for like.
start_S2b-mi() {
    local saved=$PASSTHROUGH
    PASSTHROUGH=$PASSTHROUGH_MI
    start_S2b
    PASSTHROUGH=$saved
}

# starter SCENARIO: the start_* function of a scenario name (S3-16k -> start_S3, S2:x -> start_S2).
starter() {
    local base=${1%%:*}
    case $base in
        S2b-mi) echo start_S2b-mi ;;
        S3-rs) echo start_S3-rs ;;
        *) echo "start_${base%%-*}" ;;
    esac
}

# body_size SCENARIO: the origin body of a scenario (S3-16k -> 16384; others BODY_BYTES).
body_size() {
    local base=${1%%:*}
    if [[ $base =~ -([0-9]+k)$ ]]; then numfmt --from=iec "${BASH_REMATCH[1]^^}"; else echo "$BODY_BYTES"; fi
}

# Does this build take `pii` rules? Today's refuses them ("validated but not enforced by this build
# yet"): S4 is then reported as not measured instead of failing the run.
probe_s4() {
    local dirs=() dir
    mapfile -t dirs < <(s3_rule_dirs)
    dir=$(portcullis_config S4-probe "${dirs[@]}" "$LOAD_DIR/rules-s4")
    if "$PORTCULLIS" validate --config "$dir/gateway.yaml" >"$dir/validate.out" 2>&1; then
        S4_STATUS=measured
    elif grep -q 'not enforced by this build' "$dir/validate.out"; then
        S4_STATUS="not measured: this build refuses pii rules"
        log "S4: $S4_STATUS ($(grep -m1 'not enforced' "$dir/validate.out"))"
    else
        die "the S4 rules do not validate: $(cat "$dir/validate.out")"
    fi
}

size_label() { if (($1 % 1024 == 0)); then echo "$(($1 / 1024))k"; else echo "$1"; fi; }

# The plan: "SCENARIO BYTES" lines, grouped by body size (the origin restarts between groups).
plan() {
    local s size
    for s in S0 S1 S2 S2b S2b-mi S3 S3-rs; do
        want "$s" && echo "$s $BODY_BYTES"
    done
    for size in $SIZES; do
        want "S3-$(size_label "$size")" && echo "S3-$(size_label "$size") $size"
        if [[ $S4_STATUS == measured ]] && want "S4-$(size_label "$size")"; then
            echo "S4-$(size_label "$size") $size"
        fi
    done
    variant_lines
}

want() { [[ -z $SCENARIOS ]] || [[ " $SCENARIOS " == *" $1 "* ]]; }

# Diagnostic variants: SCENARIOS may name "BASE:VARIANT" (e.g. "S2:nows"), measured like BASE
# with the shell assignments of $VARIANT_<VARIANT> applied (any of SERVER_EXTRA, PORTCULLIS,
# PASSTHROUGH, PASSTHROUGH_MI, PASSTHROUGH_ARGS, S4_RULES, S3_EXTRA_RULES, FLEET=1: fleet mode on a
# local redis-server, LOG_AS_SHIPPED=1: logging as shipped), e.g.
# VARIANT_nows="SERVER_EXTRA='work_stealing: false'",
# or VARIANT_held="S4_RULES=\$LOAD_DIR/rules-s4-held" (S4 with a blocking rule: responses held whole).
# Built in: VARIANT_log="LOG_AS_SHIPPED=1" (S2:log, the empty rule set with the access log on) and
# VARIANT_nolog="LOG_AS_SHIPPED=0" (S3:nolog, S3 with S2's logging: what the access log costs).
: "${VARIANT_log:=LOG_AS_SHIPPED=1}" "${VARIANT_nolog:=LOG_AS_SHIPPED=0}"
export VARIANT_log VARIANT_nolog
variant_lines() {
    local tok
    for tok in $SCENARIOS; do
        [[ $tok == *:* ]] || continue
        echo "$tok $(body_size "$tok")"
    done
}

with_variant() {
    local scen=$1
    shift
    if [[ $scen != *:* ]]; then
        "$@"
        return
    fi
    local spec="VARIANT_${scen#*:}"
    [[ -n ${!spec:-} ]] || die "$scen: \$$spec is not set"
    local saved=("$SERVER_EXTRA" "$PORTCULLIS" "$PASSTHROUGH" "$PASSTHROUGH_ARGS" "$PASSTHROUGH_MI" "${S4_RULES:-}" "${S3_EXTRA_RULES:-}" "${FLEET:-}" "${LOG_AS_SHIPPED:-}" "${PROXY_THREADS:-1}" "$PROXY_CPU")
    eval "${!spec}"
    "$@"
    SERVER_EXTRA=${saved[0]} PORTCULLIS=${saved[1]} PASSTHROUGH=${saved[2]} PASSTHROUGH_ARGS=${saved[3]}
    PASSTHROUGH_MI=${saved[4]} S4_RULES=${saved[5]} S3_EXTRA_RULES=${saved[6]} FLEET=${saved[7]} LOG_AS_SHIPPED=${saved[8]}
    PROXY_THREADS=${saved[9]} PROXY_CPU=${saved[10]}
}

# ---------------------------------------------------------------------------------------------
# One measurement of one scenario: warm-up, wrk (throughput + CPU), oha (latency), VmHWM.
# ---------------------------------------------------------------------------------------------
measure() {
    local scen=$1 rep=$2
    local out=$TMP/$scen.$rep
    "$(starter "$scen")"
    local url="http://$TARGET_ADDR$REQ_PATH" hdrs=()
    mapfile -t hdrs < <(wrk_load_args "$scen")

    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP_SECS}s" "${hdrs[@]}" "$url" >"$out.warmup" 2>&1
    no_errors "$scen" "$out.warmup"

    local p0 o0 p1 o1 t0 t1
    local proxy_pids=()
    [[ -n $PROXY_PID ]] && read -r -a proxy_pids <<<"$PROXY_PID"
    p0=$( ((${#proxy_pids[@]})) && cpu_ticks "${proxy_pids[@]}" || echo 0)
    o0=$(cpu_ticks "$ORIGIN_PID")
    t0=$(date +%s.%N)
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WRK_SECS}s" --latency "${hdrs[@]}" "$url" >"$out.wrk" 2>&1
    t1=$(date +%s.%N)
    p1=$( ((${#proxy_pids[@]})) && cpu_ticks "${proxy_pids[@]}" || echo 0)
    o1=$(cpu_ticks "$ORIGIN_PID")
    no_errors "$scen" "$out.wrk"

    # Open loop (oha). oha sends one fixed header set: a rotating scenario would be served from the
    # token cache after the first request per token, so it has no open-loop figures.
    local q0=0 q1=0 oha=(--oha "$out.oha.json")
    if rotates "$scen"; then
        oha=(--no-oha "oha cannot rotate tokens (one fixed header set)")
    else
        q0=$( ((${#proxy_pids[@]})) && cpu_ticks "${proxy_pids[@]}" || echo 0)
        taskset -c "$LOAD_CPU" oha --no-tui --output-format json -w -z "${OHA_SECS}s" -c "$CONNS" -q "$RATE" \
            --latency-correction "${hdrs[@]}" "$url" >"$out.oha.json" 2>"$out.oha.err" ||
            die "oha failed for $scen: $(cat "$out.oha.err")"
        q1=$( ((${#proxy_pids[@]})) && cpu_ticks "${proxy_pids[@]}" || echo 0)
    fi

    local rss=""
    [[ -n $RSS_PID ]] && rss=$(vm_hwm_kib "$RSS_PID")

    python3 "$LOAD_DIR/report.py" record --scenario "$scen" --rep "$rep" --body-bytes "$CUR_BYTES" \
        --wrk "$out.wrk" "${oha[@]}" --clk-tck "$CLK_TCK" \
        --proxy-ticks "$((p1 - p0))" --proxy-ticks-fixed "$((q1 - q0))" --origin-ticks "$((o1 - o0))" --has-proxy "$([[ -n $PROXY_PID ]] && echo 1 || echo 0)" \
        --wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" --rss-kib "${rss:-}" >>"$TMP/raw.jsonl" ||
        die "$scen: refused or failed requests during the measurement (see above)"
    tail -n1 "$TMP/raw.jsonl" | python3 "$LOAD_DIR/report.py" brief >&2

    if [[ -n $STOP_SIG ]]; then
        stop_pid "$STOP_PID" "$STOP_SIG"
    fi
}

# no_errors SCENARIO WRK_OUTPUT: a refused request means the rules (or the proxy) are not doing
# what the scenario says: fail loudly rather than measure refusals.
no_errors() {
    if grep -q 'Non-2xx or 3xx responses' "$2"; then
        die "$1: $(grep 'Non-2xx or 3xx responses' "$2") (wrk output: $2)"
    fi
}

facts() {
    python3 - "$@" <<'PY'
import json, sys
keys = ["nproc", "cpu_model", "kernel", "rustc", "nginx", "wrk", "oha", "git_rev", "date",
        "loadavg_start", "mode", "reps", "wrk_secs", "oha_secs", "warmup_secs", "conns", "rate",
        "body_bytes", "sizes", "s4_status", "request"]
import os
facts = dict(zip(keys, sys.argv[1:]))
facts["variants"] = {k[len("VARIANT_"):]: v for k, v in os.environ.items() if k.startswith("VARIANT_")}
print(json.dumps(facts))
PY
}

# diagnostic_origin SCENARIO TOOL PACKAGE: what --profile and --instructions share before the
# proxy starts: the tool is there, S4 is measurable, the origin serves the scenario's body.
diagnostic_origin() {
    local scen=$1 tool=$2 package=$3
    [[ $scen == S4* && $S4_STATUS != measured ]] && die "$scen: $S4_STATUS"
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $package)"
    REP=1
    start_origin "$(body_size "$scen")"
}

# worker_pid SCENARIO: the process that serves the requests (nginx: the worker, not the master).
worker_pid() {
    if [[ $1 == S1* ]]; then
        echo "$PROXY_PID" | awk '{print $2}'
    else
        echo "${PROXY_PID%% *}"
    fi
}

# profile SCENARIO: perf call graphs of the proxy under closed-loop wrk load.
profile() {
    local scen=$1
    diagnostic_origin "$scen" perf linux-perf
    "$(starter "$scen")"
    [[ -n $PROXY_PID ]] || die "$scen has no proxy process to profile"
    local url="http://$TARGET_ADDR$REQ_PATH" hdrs=() pid out=$RESULTS/profile-$scen
    mapfile -t hdrs < <(wrk_load_args "$scen")
    pid=$(worker_pid "$scen")
    # 1. Events per request: syscalls by kind, context switches, wake-ups (perf stat over one wrk run).
    local events=raw_syscalls:sys_enter,context-switches,sched:sched_wakeup,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_readv,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_clock_gettime,syscalls:sys_enter_connect,syscalls:sys_enter_close
    perf stat -x, -e "$events" -p "$pid" -o "$TMP/perf.stat" &
    local stat_pid=$!
    sleep 0.2
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${PERF_SECS:-5}s" "${hdrs[@]}" "$url" >"$TMP/stat.wrk" 2>&1
    kill -INT "$stat_pid" 2>/dev/null || true
    wait "$stat_pid" 2>/dev/null || true
    local nreq
    nreq=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$TMP/stat.wrk")
    # 2. Call graphs.
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$((${PERF_SECS:-5} + 4))s" "${hdrs[@]}" "$url" >"$TMP/profile.wrk" 2>&1 &
    local wrk_pid=$!
    PIDS+=("$wrk_pid")
    sleep 2
    local t0 t1
    t0=$(cpu_ticks "$pid")
    perf record -F "${PERF_FREQ:-1999}" --call-graph "${PERF_CALLGRAPH:-dwarf,32768}" -p "$pid" -o "$out.data" -- sleep "${PERF_SECS:-5}" >"$TMP/perf.out" 2>&1 ||
        die "perf record failed: $(cat "$TMP/perf.out")"
    t1=$(cpu_ticks "$pid")
    wait "$wrk_pid" || true
    no_errors "$scen" "$TMP/profile.wrk"
    {
        echo "# $scen under wrk -c$CONNS: $(grep -E 'Requests/sec' "$TMP/profile.wrk")"
        echo "# proxy CPU during perf: $(((t1 - t0) * 1000000 / CLK_TCK)) µs over ${PERF_SECS:-5} s (sampling overhead included)"
        echo "# per request, over a $nreq-request wrk run (perf stat, no sampling):"
        awk -F, -v n="$nreq" '$1 ~ /^[0-9]/ {printf "#   %-40s %8.3f\n", $3, $1 / n}' "$TMP/perf.stat"
        perf report -i "$out.data" --no-children --stdio --percent-limit 0.7 -g none --sort dso,symbol 2>/dev/null
        echo
        echo "# inclusive (children), callers folded"
        perf report -i "$out.data" --children --stdio --percent-limit 2 -g none --sort symbol 2>/dev/null
    } >"$out.txt"
    log "profile written: $out.txt ($out.data: perf report -i $out.data)"
}

# instructions SCENARIO: user-space instructions per request of the proxy (callgrind).
instructions() {
    local scen=$1
    diagnostic_origin "$scen" valgrind valgrind
    PROXY_WRAP="valgrind --tool=callgrind --separate-threads=yes --trace-children=yes --callgrind-out-file=$TMP/cg.%p.out"
    "$(starter "$scen")"
    PROXY_WRAP=""
    local pid n=${INSTR_REQUESTS:-10000} hdrs=() url="http://$TARGET_ADDR$REQ_PATH"
    pid=$(worker_pid "$scen")
    mapfile -t hdrs < <(load_headers)
    if rotates "$scen"; then
        # oha cannot rotate tokens: rs256.py sends exactly n requests over 10 connections, each
        # with the next token of the file (the warm-up's 2000 first, then n fresh ones).
        taskset -c "$LOAD_CPU" python3 "$LOAD_DIR/rs256.py" drive --tokens "$BENCH_TOKENS" --addr "$TARGET_ADDR" \
            --path "$REQ_PATH" --client-id "$CLIENT_ID" -n 2000 -c 10 >"$TMP/instr.out" 2>&1 ||
            die "warm-up failed: $(cat "$TMP/instr.out")"
        callgrind_control -z "$pid" >/dev/null
        taskset -c "$LOAD_CPU" python3 "$LOAD_DIR/rs256.py" drive --tokens "$BENCH_TOKENS" --addr "$TARGET_ADDR" \
            --path "$REQ_PATH" --client-id "$CLIENT_ID" -n "$n" -c 10 --offset 2000 >"$TMP/instr.out" 2>&1 ||
            die "rs256.py drive failed: $(cat "$TMP/instr.out")"
    else
        taskset -c "$LOAD_CPU" oha --no-tui -n 2000 -c 10 "${hdrs[@]}" "$url" >/dev/null 2>&1 || die "warm-up failed"
        callgrind_control -z "$pid" >/dev/null
        taskset -c "$LOAD_CPU" oha --no-tui --output-format json -n "$n" -c 10 "${hdrs[@]}" "$url" >"$TMP/instr.json" 2>&1 ||
            die "oha failed: $(cat "$TMP/instr.json")"
    fi
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    python3 - "$n" "$scen" "$TMP"/cg."$pid".out.* <<'PY'
import re, sys
n, scen, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
per = []
for f in files:
    text = open(f, errors="replace").read()
    m = re.search(r"^totals: (\d+)", text, re.M) or re.search(r"^summary: (\d+)", text, re.M)
    t = re.search(r"^thread: (\d+)", text, re.M)
    if m and int(m.group(1)):
        per.append((int(m.group(1)), t.group(1) if t else "?"))
per.sort(reverse=True)
total = sum(v for v, _ in per)
print(f"{scen}: {total / n:,.0f} instructions per request (user space, {n} requests at -c 10), "
      "by thread: " + ", ".join(f"#{t} {v / n:,.0f}" for v, t in per[:4]))
PY
}

# idle_memory SCENARIO: resident memory per idle keep-alive connection of the proxy
# (idle_memory.py: IDLE_CONNS connections through one request each, then idle, twice).
idle_memory() {
    local scen=$1 hdrs=() args=() h
    REP=1
    [[ -n ${CUR_BYTES:-} ]] || start_origin "$BODY_BYTES"
    "$(starter "$scen")"
    [[ -n $PROXY_PID ]] || die "$scen has no proxy process to measure"
    mapfile -t hdrs < <(load_headers)
    for h in "${hdrs[@]}"; do [[ $h == -H ]] || args+=(--header "$h"); done
    printf '%s ' "$scen"
    python3 "$LOAD_DIR/idle_memory.py" --pid "$(worker_pid "$scen")" --addr "$TARGET_ADDR" \
        --path "$REQ_PATH" --conns "${IDLE_CONNS:-1000}" "${args[@]}"
    if [[ -n $STOP_SIG ]]; then
        stop_pid "$STOP_PID" "$STOP_SIG"
    fi
}

# make_token ISSUER AUDIENCE KID SECRET_ENV: a per-run HS256 token for tenant `acme`
# (rules-s3/identity.yaml), valid for a day.
make_token() {
    python3 - "$@" <<'PY'
import base64, hashlib, hmac, json, os, sys, time
iss, aud, kid, env = sys.argv[1:5]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
now = int(time.time())
claims = {"iss": iss, "aud": aud, "sub": "bench-user", "tenant": "acme", "iat": now, "exp": now + 86400}
body = b64(json.dumps(claims).encode())
key = os.environ[env].encode()
sig = b64(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
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

    PORTCULLIS_BENCH_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    PORTCULLIS_BENCH_WEBHOOK_SECRET=whsec_$(python3 -c 'import secrets; print(secrets.token_hex(24))')
    PORTCULLIS_BENCH_JOBS_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    export PORTCULLIS_BENCH_JWT_SECRET PORTCULLIS_BENCH_WEBHOOK_SECRET PORTCULLIS_BENCH_JOBS_SECRET
    TOKEN=$(make_token portcullis-bench portcullis-bench bench-1 PORTCULLIS_BENCH_JWT_SECRET)
    JOBS_TOKEN=$(make_token portcullis-bench-jobs portcullis-internal jobs-1 PORTCULLIS_BENCH_JOBS_SECRET)
    rs_key
    REP=0
    probe_s4

    local lines=()
    mapfile -t lines < <(plan)
    ((${#lines[@]})) || die "no scenario selected (SCENARIOS=$SCENARIOS)"
    facts "$ncpu" \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
        "$(uname -sr)" \
        "$(rustc --version)" \
        "$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
        "$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}' || true)" \
        "$(oha --version)" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$([[ $QUICK == 1 ]] && echo quick || echo full)" \
        "$REPS" "$WRK_SECS" "$OHA_SECS" "$WARMUP_SECS" "$CONNS" "$RATE" "$BODY_BYTES" "$SIZES" "$S4_STATUS" \
        "GET $REQ_PATH, Authorization: Bearer <HS256 JWT> (S3-rs: another RS256 JWT each request), X-Client-Id" >"$TMP/facts.json"

    if [[ -n $INSTR ]]; then
        with_variant "$INSTR" instructions "$INSTR"
        return
    fi
    if [[ -n $PROFILE ]]; then
        with_variant "$PROFILE" profile "$PROFILE"
        return
    fi
    if [[ -n $IDLE ]]; then
        local s
        for s in $IDLE; do with_variant "$s" idle_memory "$s"; done
        return
    fi
    log "plan per repetition: $(printf '%s ' "${lines[@]}" | sed 's/ [0-9]* / /g'); $REPS repetition(s): wrk -c$CONNS ${WRK_SECS}s, oha -q $RATE ${OHA_SECS}s"
    local line scen bytes
    for ((REP = 1; REP <= REPS; REP++)); do
        for line in "${lines[@]}"; do
            read -r scen bytes <<<"$line"
            [[ ${CUR_BYTES:-} == "$bytes" ]] || start_origin "$bytes"
            log "rep $REP/$REPS: $scen"
            with_variant "$scen" measure "$scen" "$REP"
        done
    done

    python3 "$LOAD_DIR/report.py" report --facts "$TMP/facts.json" --raw "$TMP/raw.jsonl" \
        --loadavg-end "$(cut -d' ' -f1-3 /proc/loadavg)" \
        --md "$RESULTS/latest.md" --json "$RESULTS/latest.json"
    cat "$RESULTS/latest.md"
    log "written: $RESULTS/latest.md, $RESULTS/latest.json"
}

main
