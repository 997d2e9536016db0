#!/usr/bin/env bash
# restore.sh BACKUP DATA [KEYS_PARENT] — restore a backup.sh backup into an
# empty setup (runbook: deploy/backup/README.md). The database goes back
# into DATA/mxos.db (SQLite) or, with MXOS_DATABASE=postgres://…, into that
# empty database with pg_restore; with MXOS_STORAGE naming a storage file
# of kind s3, bucket.tar goes into that empty bucket (rclone). The online
# keys directory in secrets.tar is extracted into KEYS_PARENT (default:
# DATA's parent). Everything is checked first — the checksums, and that
# DATA, the database and the bucket are empty — and nothing is written
# when a check fails.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: restore.sh BACKUP DATA [KEYS_PARENT]" >&2; exit 2; }
BACKUP=$1 DATA=$2 KEYS_PARENT=${3:-$(dirname "$2")}
# shellcheck source=deploy/backup/bucket.sh
. "$(dirname "$0")/bucket.sh"
(cd "$BACKUP" && sha256sum --quiet -c SHA256SUMS) || { echo "restore: $BACKUP is damaged: checksums do not match" >&2; exit 1; }
if [ -e "$DATA" ] && [ -n "$(ls -A "$DATA")" ]; then
  echo "restore: $DATA is not empty; restore into an empty directory" >&2; exit 1
fi
if [ -n "${MXOS_DATABASE:-}" ]; then
  [ -f "$BACKUP/database.pgdump" ] || { echo "restore: the backup has no PostgreSQL dump (it was taken from SQLite)" >&2; exit 1; }
  tables=$(psql --no-psqlrc -tA -d "$MXOS_DATABASE" -c "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')") ||
    { echo "restore: cannot reach the database" >&2; exit 1; }
  [ "$tables" = 0 ] || { echo "restore: the database is not empty ($tables tables); restore into an empty database" >&2; exit 1; }
else
  [ -f "$BACKUP/database.sqlite" ] || { echo "restore: the backup has no SQLite database (it was taken from PostgreSQL)" >&2; exit 1; }
fi
BUCKET=
if [ -n "${MXOS_STORAGE:-}" ]; then
  bucket_remote "$MXOS_STORAGE"
fi
if [ -n "$BUCKET" ]; then
  [ -f "$BACKUP/bucket.tar" ] || { echo "restore: the backup has no bucket.tar (it was taken without MXOS_STORAGE)" >&2; exit 1; }
  objects=$(rclone lsf --max-depth 1 "$BUCKET") || { echo "restore: cannot list the bucket $BUCKET (it must exist)" >&2; exit 1; }
  [ -z "$objects" ] || { echo "restore: the bucket $BUCKET is not empty; restore into an empty bucket" >&2; exit 1; }
elif [ -f "$BACKUP/bucket.tar" ]; then
  echo "restore: the backup holds a bucket: set MXOS_STORAGE to the new server's storage file" >&2; exit 1
fi

mkdir -p "$DATA"
umask 077
if [ -n "${MXOS_DATABASE:-}" ]; then
  pg_restore --no-owner --exit-on-error --single-transaction --dbname="$MXOS_DATABASE" "$BACKUP/database.pgdump"
else
  cp "$BACKUP/database.sqlite" "$DATA/mxos.db"
fi
umask 022
tar -C "$DATA" -xf "$BACKUP/data.tar"
if [ -n "$BUCKET" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tar -C "$tmp" -xf "$BACKUP/bucket.tar"
  rclone copy --quiet "$tmp" "$BUCKET"
fi
# The list is read whole: grep -q ending a pipe early would make tar fail
# with SIGPIPE under pipefail.
members=$(tar -tf "$BACKUP/secrets.tar")
if grep -qx log-key <<<"$members"; then
  tar -C "$DATA" -xf "$BACKUP/secrets.tar" log-key
fi
if grep -qvx log-key <<<"$members"; then
  mkdir -p "$KEYS_PARENT"
  tar -C "$KEYS_PARENT" -xf "$BACKUP/secrets.tar" --exclude=log-key
fi
sync -f "$DATA"
echo "restore: $DATA restored; start mxos-server with the same keys, channels, database and storage" >&2
