#!/usr/bin/env bash
# TLS and HTTP/2 side by side (issue 19's benchmark): in ONE run, the same origin, the same
# certificate (ECDSA P-256, generated here), one worker each on the same core:
#   - Portcullis (no rules, access log off) terminating TLS (rustls), and
#   - nginx (Debian package, 1 worker) terminating TLS (OpenSSL),
# measured with
#   - full handshakes per second: `openssl s_time -new` (a new session per connection),
#   - resumed handshakes per second: `openssl s_time -reuse` (session resumption),
#   - HTTP/2 requests per second: `h2load` (10 connections x 10 streams),
# each as completions per second of the server's own CPU (the load tools share one core, so
# wall-clock rates would measure the client), and reported as ratios Portcullis / nginx. Each measurement runs REPS times (default 3),
# interleaved, median reported. Absolute figures move with the shared VM; ratios within one run
# are what to read.
#
#   benches/load/tls.sh            # builds the release binaries if needed (cargo build --release)
#   SECS=5 REPS=3 benches/load/tls.sh
#
# Needs: openssl, nginx, h2load (Debian: nghttp2-client), taskset; installs what is missing with
# apt-get (idempotent).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SECS=${SECS:-5}
REPS=${REPS:-3}
PROXY_CPU=1
LOAD_CPU=0
TMP=$(mktemp -d /tmp/portcullis-tls.XXXXXX)
PIDS=()
log() { printf '[tls %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v nginx >/dev/null || missing+=(nginx)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    log "installing with apt-get: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if [[ ! -x $TARGET_DIR/release/portcullis || ! -x $TARGET_DIR/release/origin ]]; then
    log "building: cargo build --release -p portcullis -p portcullis-benches --bins"
    cargo build --manifest-path "$ROOT/Cargo.toml" --release -p portcullis -p portcullis-benches --bins >&2
fi
PORTCULLIS=$TARGET_DIR/release/portcullis
ORIGIN=$TARGET_DIR/release/origin

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
wait_tls() {
    local port=$1 i
    for ((i = 0; i < 100; i++)); do
        curl -sk -o /dev/null "https://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    die "nothing answers TLS on $port"
}

# The certificate both servers present.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench.example" -addext "subjectAltName=DNS:bench.example,DNS:localhost" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$TMP/key.pem" -out "$TMP/key8.pem"

# The origin (plain HTTP, 256-byte body).
taskset -c "$LOAD_CPU" "$ORIGIN" --listen 127.0.0.1:0 --body-bytes 256 >"$TMP/origin.out" 2>&1 &
PIDS+=("$!")
for ((i = 0; i < 100; i++)); do grep -q '^listening ' "$TMP/origin.out" 2>/dev/null && break; sleep 0.05; done
ORIGIN_ADDR=$(sed -n 's/^listening //p' "$TMP/origin.out")
[[ -n $ORIGIN_ADDR ]] || die "the origin did not start"

# Portcullis: TLS on the proxy listener, h2 by ALPN, no rules.
P_PORT=$(free_port)
mkdir -p "$TMP/p/state" "$TMP/p/rules"
echo "version: 1" >"$TMP/p/rules/empty.yaml"
cat >"$TMP/p/gateway.yaml" <<YAML
version: 1
listen: { proxy: "127.0.0.1:$P_PORT", control: "127.0.0.1:0" }
state_dir: $TMP/p/state
rules: { dir: $TMP/p/rules }
server: { threads: 1, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1, pid_file: $TMP/p/pid, upgrade_sock: $TMP/p/upgrade.sock }
tls:
  certificates: [{ cert: $TMP/cert.pem, key: $TMP/key8.pem }]
upstreams:
  origin: { backends: ["$ORIGIN_ADDR"] }
routes:
  - { id: default, path_prefix: /, upstream: origin }
logging: { level: warn, access_log: false }
YAML
taskset -c "$PROXY_CPU" "$PORTCULLIS" run --config "$TMP/p/gateway.yaml" >"$TMP/p/out" 2>&1 &
P_PID=$!
PIDS+=("$P_PID")
wait_tls "$P_PORT"

# nginx: the same certificate, TLS 1.2/1.3, h2, a session cache (resumption), upstream keep-alive.
N_PORT=$(free_port)
mkdir -p "$TMP/n"
cat >"$TMP/n/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/n/nginx.pid;
error_log $TMP/n/error.log warn;
$([[ $(id -u) == 0 ]] && echo "user root;")
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/n/cb; proxy_temp_path $TMP/n/px; fastcgi_temp_path $TMP/n/fc;
    uwsgi_temp_path $TMP/n/uw; scgi_temp_path $TMP/n/sc;
    upstream origin { server $ORIGIN_ADDR; keepalive 128; }
    server {
        listen 127.0.0.1:$N_PORT ssl http2;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
taskset -c "$PROXY_CPU" nginx -p "$TMP/n" -e "$TMP/n/error.log" -c "$TMP/n/nginx.conf" >"$TMP/n/out" 2>&1 &
N_MASTER=$!
PIDS+=("$N_MASTER")
wait_tls "$N_PORT"
N_PID=$(pgrep -P "$N_MASTER" | head -1)
[[ -n $N_PID ]] || die "no nginx worker"
curl -sk --http2 -o /dev/null -w '%{http_version}' "https://127.0.0.1:$P_PORT/" | grep -q '^2' || die "Portcullis does not speak h2"
curl -sk --http2 -o /dev/null -w '%{http_version}' "https://127.0.0.1:$N_PORT/" | grep -q '^2' || die "nginx does not speak h2"

# One measurement; prints a number.
# Each measurement prints how many handshakes or requests completed; `measure` turns that into
# a rate per second of the server's CPU (utime + stime of the serving process over the run):
# the load generator shares one core, so per-server-CPU rates are what compare the servers.
handshakes() {
    local port=$1 out
    shift
    out=$(taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$port" "$@" -time "$SECS" 2>/dev/null || true)
    sed -n 's/^\([0-9]*\) connections in [0-9]* real seconds.*/\1/p' <<<"$out" | tail -1
}
full() { handshakes "$1" -new; }
# TLS 1.2: s_time does not read TLS 1.3's post-handshake tickets, so it could not resume them.
resumed() { handshakes "$1" -reuse -tls1_2; }
h2() { taskset -c "$LOAD_CPU" h2load -D "$SECS" -c 10 -m 10 "https://127.0.0.1:$1/" 2>/dev/null | sed -n 's/^requests: [0-9]* total, [0-9]* started, \([0-9]*\) done.*/\1/p'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() {
    local what=$1 port=$2 pid=$3 t0 t1 n
    t0=$(ticks "$pid")
    n=$($what "$port")
    t1=$(ticks "$pid")
    [[ -n $n && $t1 -gt $t0 ]] || return 0
    awk -v n="$n" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", n / (t / hz) }'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A R
for what in full resumed h2; do
    for name in portcullis nginx; do R[$what.$name]=""; done
done
for ((rep = 1; rep <= REPS; rep++)); do
    for what in full resumed h2; do
        for name in portcullis nginx; do
            port=$P_PORT pid=$P_PID
            [[ $name == nginx ]] && port=$N_PORT pid=$N_PID
            v=$(measure "$what" "$port" "$pid")
            [[ -n $v ]] || die "$what against $name gave no figure"
            log "rep $rep: $what $name: $v"
            R[$what.$name]+="$v"$'\n'
        done
    done
done
echo "| measure (median of $REPS, ${SECS}s each) | Portcullis | nginx | Portcullis / nginx |"
echo "|---|---|---|---|"
for what in full resumed h2; do
    p=$(printf '%s' "${R[$what.portcullis]}" | median)
    n=$(printf '%s' "${R[$what.nginx]}" | median)
    label=$what
    case $what in
        full) label="full handshakes per server CPU second (s_time -new)" ;;
        resumed) label="resumed TLS 1.2 handshakes per server CPU second (s_time -reuse)" ;;
        h2) label="HTTP/2 requests per server CPU second (h2load -c10 -m10)" ;;
    esac
    printf '| %s | %s | %s | %s |\n' "$label" "$p" "$n" "$(awk -v a="$p" -v b="$n" 'BEGIN { printf "%.2f", a / b }')"
done
