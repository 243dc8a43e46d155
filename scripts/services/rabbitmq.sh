#!/usr/bin/env bash
# Make the local RabbitMQ ready for tidegate's tests (127.0.0.1:5672, guest/guest), idempotently:
#   - install it (apt-get rabbitmq-server) on a fresh Debian/Ubuntu machine when root, else print the
#     command and exit 1
#   - start the node if it is down (rabbitmq-server -detached), start the app if it was stopped
#     (rabbitmqctl stop_app), and wait for `rabbitmqctl await_startup`
set -euo pipefail

if ! command -v rabbitmq-server >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "rabbitmq.sh: RabbitMQ not installed; installing it with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
    else
        echo "rabbitmq.sh: RabbitMQ is not installed. Run as root:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y rabbitmq-server" >&2
        exit 1
    fi
fi
if [ "$(id -u)" -ne 0 ]; then
    if ! rabbitmq-diagnostics -q check_running >/dev/null 2>&1; then
        echo "rabbitmq.sh: RabbitMQ is not running and I am not root. Run:" >&2
        echo "  sudo rabbitmq-server -detached && sudo rabbitmqctl await_startup" >&2
        exit 1
    fi
    echo "rabbitmq.sh: RabbitMQ running"
    exit 0
fi

node_up() { rabbitmqctl -q ping >/dev/null 2>&1; }
app_running() { rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }

started=0
if ! node_up; then
    echo "rabbitmq.sh: starting RabbitMQ (rabbitmq-server -detached)" >&2
    rabbitmq-server -detached
    for _ in $(seq 1 120); do
        node_up && break
        sleep 0.5
    done
    started=1
fi
if [ "$started" -eq 1 ]; then
    rabbitmqctl -q await_startup --timeout 120
elif ! app_running; then
    # the node runs but its app was stopped (rabbitmqctl stop_app): start the app again
    echo "rabbitmq.sh: the RabbitMQ app is stopped; rabbitmqctl start_app" >&2
    rabbitmqctl -q start_app || true
    rabbitmqctl -q await_startup --timeout 60
fi
if ! app_running; then
    echo "rabbitmq.sh: RabbitMQ did not start; see /var/log/rabbitmq/" >&2
    exit 1
fi
echo "rabbitmq.sh: RabbitMQ $(rabbitmqctl -q version) ready on 127.0.0.1:5672"
