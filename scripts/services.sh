#!/usr/bin/env bash
# Install (Debian/Ubuntu, as root) and start the services the tests and a local
# cluster use: PostgreSQL and Redis, bound to 127.0.0.1 only.
#   scripts/services.sh install   apt-get the packages (redis-server, postgresql, chromium,
#                                 docker-compose to validate the compose file)
#   scripts/services.sh start     start PostgreSQL and create the unetbg role; print the URL
# Redis is started by the tests themselves (each on its own free port, so a test can
# restart it); for a local cluster run: redis-server --bind 127.0.0.1 --port 6379 --daemonize yes
set -euo pipefail

PG_USER=${UNETBG_PG_USER:-unetbg}
PG_PASSWORD=${UNETBG_PG_PASSWORD:-unetbg}

install() {
  if command -v redis-server >/dev/null && command -v pg_ctlcluster >/dev/null \
    && command -v chromium >/dev/null && command -v docker-compose >/dev/null; then
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker-compose (v1) only parses docker-compose.yml in the tests; no engine runs here.
  apt-get install -y -qq --no-install-recommends redis-server postgresql chromium docker-compose >/dev/null
  # The Debian package starts a Redis on port 6379 when systemd exists; we manage our own.
}

start() {
  local version
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! pg_lsclusters -h | grep -q "^$version main"; then
    pg_createcluster "$version" main >/dev/null
  fi
  # Loopback only, whatever the cluster's config says.
  echo "listen_addresses = '127.0.0.1'" >"/etc/postgresql/$version/main/conf.d/unetbg-loopback.conf"
  pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main status >/dev/null
  for _ in $(seq 1 30); do
    su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
    sleep 1
  done
  su postgres -c "psql -qAt" <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SQL
  echo "postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:5432/postgres"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  *) echo "usage: $0 install|start" >&2; exit 2 ;;
esac
