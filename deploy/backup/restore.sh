#!/usr/bin/env bash
# restore.sh BACKUP DATA [KEYS_PARENT] — restore a backup.sh backup into an
# empty data directory DATA (runbook: deploy/backup/README.md). The
# database goes back into DATA/mxos.db (SQLite) or, with
# MXOS_DATABASE=postgres://…, into that empty database with pg_restore.
# The online keys directory in secrets.tar is extracted into KEYS_PARENT
# (default: DATA's parent). Checksums are checked first; nothing is
# written when they do not match.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: restore.sh BACKUP DATA [KEYS_PARENT]" >&2; exit 2; }
BACKUP=$1 DATA=$2 KEYS_PARENT=${3:-$(dirname "$2")}
(cd "$BACKUP" && sha256sum --quiet -c SHA256SUMS) || { echo "restore: $BACKUP is damaged: checksums do not match" >&2; exit 1; }
if [ -e "$DATA" ] && [ -n "$(ls -A "$DATA")" ]; then
  echo "restore: $DATA is not empty; restore into an empty directory" >&2; exit 1
fi
mkdir -p "$DATA"
umask 077
if [ -n "${MXOS_DATABASE:-}" ]; then
  [ -f "$BACKUP/database.pgdump" ] || { echo "restore: the backup has no PostgreSQL dump (it was taken from SQLite)" >&2; exit 1; }
  pg_restore --no-owner --exit-on-error --dbname="$MXOS_DATABASE" "$BACKUP/database.pgdump"
else
  [ -f "$BACKUP/database.sqlite" ] || { echo "restore: the backup has no SQLite database (it was taken from PostgreSQL)" >&2; exit 1; }
  cp "$BACKUP/database.sqlite" "$DATA/mxos.db"
fi
umask 022
tar -C "$DATA" -xf "$BACKUP/data.tar"
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
echo "restore: $DATA restored; start mxos-server with the same keys, channels and database" >&2
