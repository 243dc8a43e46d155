#!/usr/bin/env bash
# Make the local PostgreSQL ready for tidegate's tests, idempotently:
#   - install it (apt-get) on a fresh Debian/Ubuntu machine when root, else print the command and exit 1
#   - start the cluster if it is down
#   - wal_level=logical, max_replication_slots/max_wal_senders >= 32 (ALTER SYSTEM),
#     restarting the server once, and only when one of those changed
# Run as root (make services does). Safe to run again and again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

WANT_SLOTS=32
WANT_SENDERS=32

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install_or_explain postgres.sh PostgreSQL postgresql postgresql-contrib
fi

VER="$(ls /etc/postgresql | sort -V | tail -n1)"
CLUSTER=main

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}
psql_pg() { as_pg "psql -X -q -At -v ON_ERROR_STOP=1 -p ${PGPORT:-5432} -c \"$1\""; }

running() { pg_lsclusters --no-header | awk -v v="$VER" -v c="$CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; }

if ! running; then
    echo "postgres.sh: starting PostgreSQL $VER/$CLUSTER" >&2
    if [ "$(id -u)" -eq 0 ]; then
        pg_ctlcluster --skip-systemctl-redirect "$VER" "$CLUSTER" start
    else
        echo "postgres.sh: PostgreSQL is down and I am not root. Run:" >&2
        echo "  sudo pg_ctlcluster --skip-systemctl-redirect $VER $CLUSTER start" >&2
        exit 1
    fi
fi
for _ in $(seq 1 50); do
    psql_pg "select 1" >/dev/null 2>&1 && break
    sleep 0.2
done

need_restart=0
wal_level="$(psql_pg "show wal_level")"
if [ "$wal_level" != "logical" ]; then
    psql_pg "alter system set wal_level = logical"
    need_restart=1
fi
slots="$(psql_pg "show max_replication_slots")"
if [ "$slots" -lt "$WANT_SLOTS" ]; then
    psql_pg "alter system set max_replication_slots = $WANT_SLOTS"
    need_restart=1
fi
senders="$(psql_pg "show max_wal_senders")"
if [ "$senders" -lt "$WANT_SENDERS" ]; then
    psql_pg "alter system set max_wal_senders = $WANT_SENDERS"
    need_restart=1
fi
# pending_restart catches an ALTER SYSTEM done earlier whose restart never happened
pending="$(psql_pg "select count(*) from pg_settings where pending_restart and name in ('wal_level','max_replication_slots','max_wal_senders')")"
if [ "$pending" != "0" ]; then
    need_restart=1
fi

if [ "$need_restart" -eq 1 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "postgres.sh: settings changed; a restart is needed. Run:" >&2
        echo "  sudo pg_ctlcluster --skip-systemctl-redirect $VER $CLUSTER restart" >&2
        exit 1
    fi
    echo "postgres.sh: restarting PostgreSQL $VER/$CLUSTER to apply wal_level=logical and replication limits" >&2
    pg_ctlcluster --skip-systemctl-redirect "$VER" "$CLUSTER" restart -m fast
    for _ in $(seq 1 50); do
        psql_pg "select 1" >/dev/null 2>&1 && break
        sleep 0.2
    done
fi

echo "postgres.sh: PostgreSQL $VER ready (wal_level=$(psql_pg "show wal_level"), max_replication_slots=$(psql_pg "show max_replication_slots"), max_wal_senders=$(psql_pg "show max_wal_senders"))"
