#!/bin/sh
# Entry point of the read replica (docker-compose.replica.yml): clone the primary once, then stream from it.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # A replication slot keeps the primary's WAL until this replica has it, however long it was away.
    pg_basebackup --host="$PRIMARY_HOST" --username=replicator --pgdata="$PGDATA" \
        --wal-method=stream --write-recovery-conf --checkpoint=fast \
        --slot=cryptobt_replica --create-slot --progress
    chmod 700 "$PGDATA"
fi
# hot_standby_feedback: long reads here hold back the primary's vacuum instead of being cancelled.
exec postgres -c config_file=/etc/postgresql/postgresql.conf -c hot_standby=on -c hot_standby_feedback=on \
    -c max_standby_streaming_delay=30s
