#!/bin/sh
# First start: create the cluster and the instance's database and owner from the environment
# (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB). Every start: run the server in the foreground,
# listening on all addresses with password authentication for everyone but the local superuser.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (the instance database password)}"
POSTGRES_USER="${POSTGRES_USER:-dagster}"
POSTGRES_DB="${POSTGRES_DB:-dagster}"
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  "$BIN/initdb" -D "$PGDATA" --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "host all all ::/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  # The password arrives as a psql variable, quoted by psql (:'pw'), never spliced into SQL.
  psql -v ON_ERROR_STOP=1 -v user="$POSTGRES_USER" -v pw="$POSTGRES_PASSWORD" -v db="$POSTGRES_DB" postgres <<'SQL' >/dev/null
CREATE ROLE :"user" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"user";
SQL
  "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c port="${POSTGRES_PORT:-5432}"
