#!/usr/bin/env bash
# Entry point of the `replica` service (official postgres image, runs as root):
# clone the primary with pg_basebackup -R on first start, then run postgres
# as a hot standby, as the postgres user.
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=primary}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATOR_PASSWORD:?set REPLICATOR_PASSWORD}"

mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "replica: cloning $PRIMARY_HOST:$PRIMARY_PORT into $PGDATA"
    gosu postgres env PGPASSWORD="$REPLICATOR_PASSWORD" \
        pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U replicator \
            -D "$PGDATA" -R -X stream --checkpoint=fast --progress
fi

exec gosu postgres postgres -D "$PGDATA" -c hot_standby=on -c hot_standby_feedback=on
