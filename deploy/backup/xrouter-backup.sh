#!/usr/bin/env bash
# Backs up the whole PostgreSQL cluster (pg_dumpall: roles, every database) into
# $BACKUP_DIR/xrouter-pg-<UTC timestamp>.sql.gz, then deletes this script's own backups older
# than $RETENTION_DAYS days. Run daily by xrouter-backup.timer; restore with xrouter-restore.sh.
#
# Environment:
#   BACKUP_DIR       where backups go (default /var/backups/xrouter/postgresql)
#   RETENTION_DAYS   days a backup is kept (default 7; 0 keeps only the newest run's file)
#   PGHOST, PGPORT, PGUSER, PGPASSWORD or ~/.pgpass (PGPASSFILE): libpq's own variables; the
#   password never appears on a command line. Unset, pg_dumpall connects over the local socket.
set -euo pipefail

backup_dir=${BACKUP_DIR:-/var/backups/xrouter/postgresql}
retention_days=${RETENTION_DAYS:-7}
prefix=xrouter-pg-
pattern="${prefix}[0-9]*T[0-9]*Z.sql.gz"

die() {
    echo "xrouter-backup: $*" >&2
    exit 1
}

[[ $retention_days =~ ^[0-9]+$ ]] || die "RETENTION_DAYS must be a whole number of days (got '$retention_days')"
command -v pg_dumpall >/dev/null || die "pg_dumpall not found (install postgresql-client)"

umask 077
mkdir -p -- "$backup_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
final="$backup_dir/$prefix$stamp.sql.gz"
# The partial file lives in the same directory, so the final mv is an atomic rename: a reader
# (or the rotation below) never sees a half-written backup under the final name.
partial=$(mktemp -- "$backup_dir/.$prefix$stamp.XXXXXX.partial")
trap 'rm -f -- "$partial"' EXIT

# pipefail: a failing pg_dumpall fails the pipeline even though gzip succeeded.
pg_dumpall --no-password | gzip -6 --no-name >"$partial" ||
    die "pg_dumpall failed; no backup written (previous backups kept)"
gzip --test -- "$partial" || die "the compressed dump does not verify"
sync -- "$partial"
mv -f -- "$partial" "$final"
trap - EXIT
echo "xrouter-backup: wrote $final ($(stat -c %s -- "$final") bytes)"

# Rotation runs only after a successful backup, and touches only files named like ours
# (plus partial files that a killed run left behind).
minutes=$((retention_days * 24 * 60))
find "$backup_dir" -maxdepth 1 -type f -name "$pattern" -mmin "+$minutes" ! -name "${final##*/}" -print -delete |
    sed 's/^/xrouter-backup: removed old backup /'
find "$backup_dir" -maxdepth 1 -type f -name ".$prefix*.partial" -mmin +1440 -delete
