#!/usr/bin/env bash
# Make the local MariaDB ready for tidegate's mysql source tests, idempotently:
#   - install mariadb-server when missing (as root; otherwise print the command and exit 1)
#   - start mariadbd when it is down and wait for it to answer
#   - binlog on, ROW format, FULL row image, FULL row metadata (column names in the binlog), server_id,
#     written to /etc/mysql/mariadb.conf.d/60-tidegate.cnf; the server is restarted only when a
#     setting that is not dynamic (log_bin) changes; dynamic ones are also SET GLOBAL at once
#   - root@127.0.0.1 without password reachable over TCP (what the tests use)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

CONF_DIR=/etc/mysql/mariadb.conf.d
CONF="$CONF_DIR/60-tidegate.cnf"
MYCNF=/etc/mysql/my.cnf
DAEMON=/usr/sbin/mariadbd
SOCK=/run/mysqld/mysqld.sock
HOST=127.0.0.1
PORT=3306

say() { echo "mariadb.sh: $*"; }
sql_sock() { mariadb --protocol=socket -S "$SOCK" -uroot -N -B -e "$1"; }
sql_tcp() { mariadb --protocol=tcp -h "$HOST" -P "$PORT" -uroot -N -B -e "$1"; }

if [ ! -x "$DAEMON" ]; then
  apt_install_or_explain mariadb.sh MariaDB mariadb-server mariadb-client
fi
if [ "$(id -u)" -ne 0 ]; then
  have="$(sql_tcp "SELECT CONCAT_WS(' ', @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata)" 2>/dev/null || true)"
  if [ "$have" = "ON ROW FULL FULL" ] || [ "$have" = "1 ROW FULL FULL" ]; then
    say "not root, but MariaDB on $HOST:$PORT is ready (binlog on, ROW, FULL images)"
    exit 0
  fi
  echo "mariadb.sh: MariaDB on $HOST:$PORT is not ready (${have:-not answering}); run as root: sudo $0" >&2
  exit 1
fi

wait_up() {
  for _ in $(seq 1 300); do
    if [ -S "$SOCK" ] && sql_sock "SELECT 1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "mariadb.sh: mariadbd did not come up within 30 s; see /var/log/mysql/error.log" >&2
  exit 1
}

start() {
  mkdir -p /run/mysqld /var/log/mysql
  chown mysql:mysql /run/mysqld /var/log/mysql 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec "$DAEMON"
  wait_up
}

stop() {
  mariadb-admin --protocol=socket -S "$SOCK" -uroot shutdown
  for _ in $(seq 1 300); do
    if ! start-stop-daemon --status --exec "$DAEMON"; then return 0; fi
    sleep 0.1
  done
  echo "mariadb.sh: mariadbd did not stop within 30 s" >&2
  exit 1
}

# --- configuration file (and make sure my.cnf reads the folder)
mkdir -p "$CONF_DIR"
WANT="# written by tidegate scripts/services/mariadb.sh
[mysqld]
log_bin = mysql-bin
binlog_format = ROW
binlog_row_image = FULL
binlog_row_metadata = FULL
server_id = 1
binlog_expire_logs_seconds = 86400
"
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$(printf '%s' "$WANT")" ]; then
  printf '%s' "$WANT" > "$CONF"
  say "wrote $CONF"
fi
if [ -f "$MYCNF" ] && ! grep -rqs "includedir $CONF_DIR" /etc/mysql/my.cnf /etc/mysql/mariadb.cnf; then
  printf '\n!includedir %s/\n' "$CONF_DIR" >> "$MYCNF"
  say "added !includedir $CONF_DIR/ to $MYCNF"
fi

# --- running?
if ! sql_sock "SELECT 1" >/dev/null 2>&1; then
  say "starting mariadbd"
  start
fi

# --- settings: restart only for log_bin (not dynamic); the rest are dynamic
var() { sql_sock "SELECT @@GLOBAL.$1"; }
if [ "$(var log_bin)" != "1" ]; then
  say "log_bin is off: restarting mariadbd once to turn the binlog on"
  stop
  start
fi
[ "$(var binlog_format)" = "ROW" ] || sql_sock "SET GLOBAL binlog_format = 'ROW'"
[ "$(var binlog_row_image)" = "FULL" ] || sql_sock "SET GLOBAL binlog_row_image = 'FULL'"
[ "$(var binlog_row_metadata)" = "FULL" ] || sql_sock "SET GLOBAL binlog_row_metadata = 'FULL'"
[ "$(var server_id)" = "1" ] || sql_sock "SET GLOBAL server_id = 1"

# --- root over TCP without password (fresh Debian installs only have root@localhost via unix_socket)
if ! sql_tcp "SELECT 1" >/dev/null 2>&1; then
  say "creating root@127.0.0.1 (no password) for the tests"
  sql_sock "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; \
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES"
fi

say "ready: $(sql_tcp "SELECT CONCAT(VERSION(), ' log_bin=', @@log_bin, ' format=', @@binlog_format, \
 ' row_image=', @@binlog_row_image, ' row_metadata=', @@binlog_row_metadata, ' server_id=', @@server_id)")"
