#!/usr/bin/env bash
# Runs once, from /docker-entrypoint-initdb.d, when the primary's data
# directory is first initialised: creates the replication role and lets it
# connect for replication (SCRAM) from the compose network.
set -eo pipefail   # no -u: the entrypoint sources this file if it is not executable

: "${REPLICATOR_PASSWORD:?set REPLICATOR_PASSWORD}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v pw="$REPLICATOR_PASSWORD" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD :'pw';
SQL

echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
