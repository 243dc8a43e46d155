#!/usr/bin/env bash
# Make the local RabbitMQ ready for tidegate's tests (127.0.0.1:5672, guest/guest), idempotently:
#   - install it (apt-get rabbitmq-server) on a fresh Debian/Ubuntu machine when root, else print the
#     command and exit 1
#   - nothing more when the AMQP port answers; else start the app if the node runs (after
#     `rabbitmqctl stop_app`), or the node (rabbitmq-server -detached, then await_startup)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

if ! command -v rabbitmq-server >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null 2>&1; then
    apt_install_or_explain rabbitmq.sh RabbitMQ rabbitmq-server
fi
amqp_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

# the AMQP listener only runs while the app runs: an open port means ready (no slow CLI calls)
if amqp_open; then
    echo "rabbitmq.sh: RabbitMQ ready on 127.0.0.1:5672"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "rabbitmq.sh: RabbitMQ is not running and I am not root. Run:" >&2
    echo "  sudo rabbitmq-server -detached && sudo rabbitmqctl await_startup" >&2
    exit 1
fi

if rabbitmqctl -q ping >/dev/null 2>&1; then
    # the node runs but its app was stopped (rabbitmqctl stop_app): start the app again
    echo "rabbitmq.sh: the RabbitMQ app is stopped; rabbitmqctl start_app" >&2
    rabbitmqctl -q start_app
else
    echo "rabbitmq.sh: starting RabbitMQ (rabbitmq-server -detached)" >&2
    rabbitmq-server -detached
    for _ in $(seq 1 120); do
        rabbitmqctl -q ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    rabbitmqctl -q await_startup --timeout 120
fi
for _ in $(seq 1 100); do
    amqp_open && break
    sleep 0.1
done
if ! amqp_open; then
    echo "rabbitmq.sh: RabbitMQ did not open 127.0.0.1:5672; see /var/log/rabbitmq/" >&2
    exit 1
fi
echo "rabbitmq.sh: RabbitMQ ready on 127.0.0.1:5672"
