#!/usr/bin/env bash
# Restores a backup written by xrouter-backup.sh into a FRESH PostgreSQL cluster (just after
# initdb / apt install: no databases but postgres and the templates). Stops at the first SQL
# error. Connection: libpq's PGHOST, PGPORT, PGUSER (a superuser), PGPASSWORD or ~/.pgpass.
#
#   xrouter-restore.sh /var/backups/xrouter/postgresql/xrouter-pg-20250101T031500Z.sql.gz
set -euo pipefail

die() {
    echo "xrouter-restore: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || die "usage: xrouter-restore.sh BACKUP.sql.gz"
backup=$1
[[ -f $backup ]] || die "no such file: $backup"
gzip --test -- "$backup" || die "$backup is not a valid gzip file"

psql_base=(psql --no-psqlrc --no-password --quiet --dbname=postgres)
existing=$("${psql_base[@]}" --tuples-only --no-align --command \
    "SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database
     WHERE datname NOT IN ('postgres', 'template0', 'template1')") ||
    die "cannot connect to PostgreSQL (check PGHOST, PGPORT, PGUSER)"
[[ -z $existing ]] || die "the target cluster is not fresh (databases: $existing); restore into a new cluster"

# pg_dumpall recreates every role, including the superuser we are connected as, which exists
# already: drop exactly that one statement so every other error still stops the restore.
me=$("${psql_base[@]}" --tuples-only --no-align --command "SELECT current_user")
gzip --decompress --stdout -- "$backup" |
    grep --invert-match --line-regexp --fixed-strings -- "CREATE ROLE $me;" |
    "${psql_base[@]}" --set ON_ERROR_STOP=1 --file=- >/dev/null ||
    die "restore of $backup failed (see the psql error above)"
echo "xrouter-restore: restored $backup"
