#!/usr/bin/env bash
# Calls a second through HAProxy to 1, 2 and 3 replicas of the file server (their rate limits in Redis), and the
# per-call cost of Redis-backed rate limiting against in-process limiting on one replica, side by side; wrk drives
# the load (Debian's `wrk`), all on loopback. Prints a Markdown table per part.
#
# Usage: benches/replicas/run.sh [SECONDS] [ROUNDS]     (defaults 10 and 3; needs redis-server, haproxy, wrk and a
#        release build: cargo build --release -p secure-file-server -p secure-tools-tests --bin mint-test-token)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
rounds=${2:-3}
server=target/release/secure-file-server
mint=target/release/mint-test-token
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing on $1" >&2; exit 1; }
# CPU seconds (user + system) a process has used.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

export MCP_AUTH_HS256_SECRET=replicas-bench-secret-0123456789abcdef
mkdir -p "$work/data" && echo hello >"$work/data/greeting.txt"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
pids+=("$redis_pid")
wait_port "$redis_port"
lb_port=$(free_port)
resource="http://127.0.0.1:$lb_port/mcp"
TOKEN=$("$mint" --issuer https://issuer.test --audience "$resource" --subject bench --scopes files.read --ttl 7200)
export TOKEN

# Starts a replica on a free port; prints "PID PORT". $1: a name, then extra flags.
replica() {
    local name=$1 port
    shift
    port=$(free_port)
    "$server" --data-root "$work/data" --audit-log "$work/$name.jsonl" --server-id files \
        --http "127.0.0.1:$port" --issuer https://issuer.test --resource-url "$resource" \
        --max-concurrent-calls 1024 "$@" </dev/null 2>/dev/null &
    echo "$! $port"
}

load() { wrk -t2 -c32 -d"${seconds}s" --latency -s benches/replicas/call.lua "$1" | grep '^RESULT'; }

echo "## Through HAProxy ($seconds s per run, wrk -t2 -c32, $rounds rounds, rate limits in Redis)"
echo
echo "| replicas | calls/s (median) | p50 µs | p99 µs | errors |"
echo "| ---: | ---: | ---: | ---: | ---: |"
shared=(--rate-limit 1000000/s --rate-limit-redis "redis://127.0.0.1:$redis_port/0")
for count in 1 2 3; do
    started=() servers=""
    for n in $(seq "$count"); do
        read -r pid port < <(replica "r$count-$n" "${shared[@]}")
        pids+=("$pid")
        started+=("$pid")
        wait_port "$port"
        servers+="    server r$n 127.0.0.1:$port\n"
    done
    printf 'global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n    http-reuse always\nfrontend mcp\n    bind 127.0.0.1:%s\n    default_backend replicas\nbackend replicas\n    balance roundrobin\n%b' \
        "$lb_port" "$servers" >"$work/haproxy.cfg"
    haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 &
    lb=$!
    pids+=("$lb")
    wait_port "$lb_port"
    results=()
    for _ in $(seq "$rounds"); do results+=("$(load "$resource")"); done
    median=$(printf '%s\n' "${results[@]}" | awk '{ split($2,a,"="); split($3,b,"="); print a[2]/b[2], $0 }' | sort -n | awk -v m=$(((rounds + 1) / 2)) 'NR == m')
    rate=$(echo "$median" | awk '{ printf "%.0f", $1 }')
    p50=$(echo "$median" | sed 's/.*p50_us=\([0-9]*\).*/\1/')
    p99=$(echo "$median" | sed 's/.*p99_us=\([0-9]*\).*/\1/')
    errors=$(echo "$median" | sed 's/.*errors=\([0-9]*\).*/\1/')
    echo "| $count | $rate | $p50 | $p99 | $errors |"
    kill "$lb" "${started[@]}"
    wait "$lb" "${started[@]}" 2>/dev/null || true
done

echo
echo "## One replica, no balancer: the rate limit in process against in Redis ($rounds rounds each, alternating)"
echo
echo "| limiter | calls/s, 32 connections (median) | server CPU µs per call | redis-server CPU µs per call | p50 µs, one connection | calls/s, one connection |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
declare -A rates cpus rcpus singles single_rates
for round in $(seq "$rounds"); do
    for variant in in-process redis; do
        flags=(--rate-limit 1000000/s)
        [[ $variant == redis ]] && flags+=(--rate-limit-redis "redis://127.0.0.1:$redis_port/0")
        read -r pid port < <(replica "$variant-$round" "${flags[@]}")
        pids+=("$pid")
        wait_port "$port"
        url="http://127.0.0.1:$port/mcp"
        before=$(cpu "$pid") rbefore=$(cpu "$redis_pid")
        result=$(load "$url")
        after=$(cpu "$pid") rafter=$(cpu "$redis_pid")
        calls=$(echo "$result" | sed 's/.*calls=\([0-9]*\).*/\1/')
        secs=$(echo "$result" | sed 's/.*seconds=\([0-9.]*\).*/\1/')
        rates[$variant]+="$(awk -v c="$calls" -v s="$secs" 'BEGIN { printf "%.0f", c / s }') "
        cpus[$variant]+="$(awk -v a="$after" -v b="$before" -v c="$calls" 'BEGIN { printf "%.1f", (a - b) * 1e6 / c }') "
        rcpus[$variant]+="$(awk -v a="$rafter" -v b="$rbefore" -v c="$calls" 'BEGIN { printf "%.1f", (a - b) * 1e6 / c }') "
        single=$(wrk -t1 -c1 -d"${seconds}s" --latency -s benches/replicas/call.lua "$url" | grep '^RESULT')
        singles[$variant]+="$(echo "$single" | sed 's/.*p50_us=\([0-9]*\).*/\1/') "
        single_rates[$variant]+="$(echo "$single" | awk '{ split($2,a,"="); split($3,b,"="); printf "%.0f", a[2]/b[2] }') "
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for variant in in-process redis; do
    echo "| $variant | $(echo "${rates[$variant]}" | median) | $(echo "${cpus[$variant]}" | median) | $(echo "${rcpus[$variant]}" | median) | $(echo "${singles[$variant]}" | median) | $(echo "${single_rates[$variant]}" | median) |"
done
