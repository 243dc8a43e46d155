#!/usr/bin/env bash
# Make the local NATS server with JetStream ready for tidegate's tests (127.0.0.1:4222), idempotently:
#   - install it (apt-get nats-server) on a fresh Debian/Ubuntu machine when root, else print the
#     command and exit 1
#   - start it with JetStream (-js, store in /var/lib/nats-server) if nothing listens on the port
# The sink tests also run this script to bring NATS back after stopping it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

PORT="${NATS_PORT:-4222}"
BIN=/usr/sbin/nats-server
# the pidfile keeps start-stop-daemon from taking any other nats-server (another port) for ours
START=(start-stop-daemon --start --oknodo --background --pidfile "/run/nats-server-$PORT.pid" --make-pidfile
       --exec "$BIN" --
       -a 127.0.0.1 -p "$PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log)

if [ ! -x "$BIN" ]; then
    apt_install_or_explain nats.sh nats-server nats-server
fi

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

if ! listening; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "nats.sh: NATS is down on 127.0.0.1:$PORT and I am not root. Run:" >&2
        echo "  sudo mkdir -p /var/lib/nats-server && sudo ${START[*]}" >&2
        exit 1
    fi
    echo "nats.sh: starting nats-server with JetStream on 127.0.0.1:$PORT" >&2
    mkdir -p /var/lib/nats-server
    "${START[@]}"
    for _ in $(seq 1 100); do
        listening && break
        sleep 0.1
    done
fi
if ! listening; then
    echo "nats.sh: nats-server does not listen on 127.0.0.1:$PORT; see /var/log/nats-server.log" >&2
    exit 1
fi
# a server started by someone else without -js would fail every JetStream test: say so
for pid in $(pgrep -x nats-server || true); do
    args="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$args" in
        *"-p $PORT"*|*"--port $PORT"*)
            case "$args" in
                *" -js"*|*"--jetstream"*) ;;
                *) echo "nats.sh: nats-server (pid $pid) runs without JetStream; restart it with -js" >&2; exit 1 ;;
            esac ;;
    esac
done
echo "nats.sh: $("$BIN" --version) with JetStream ready on 127.0.0.1:$PORT"
