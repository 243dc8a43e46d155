#!/usr/bin/env bash
# Make the local Redis ready for tidegate's tests (127.0.0.1:6379), idempotently:
#   - install it (apt-get redis-server) on a fresh Debian/Ubuntu machine when root, else print the
#     command and exit 1
#   - start it if it does not answer PING (no persistence: tests only need a live server)
# The sink tests also run this script to bring Redis back after `redis-cli shutdown nosave`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

PORT="${REDIS_PORT:-6379}"

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install_or_explain redis.sh Redis redis-server redis-tools
fi

ping() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = "PONG" ]; }

if ! ping; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "redis.sh: Redis is down on 127.0.0.1:$PORT and I am not root. Run:" >&2
        echo "  sudo mkdir -p /var/lib/redis /var/log/redis && sudo redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $PORT --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log" >&2
        exit 1
    fi
    echo "redis.sh: starting Redis on 127.0.0.1:$PORT" >&2
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$PORT" --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 100); do
        ping && break
        sleep 0.1
    done
fi
if ! ping; then
    echo "redis.sh: Redis did not answer PING on 127.0.0.1:$PORT; see /var/log/redis/ci.log" >&2
    exit 1
fi
echo "redis.sh: Redis $(redis-cli -h 127.0.0.1 -p "$PORT" info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p') ready on 127.0.0.1:$PORT"
