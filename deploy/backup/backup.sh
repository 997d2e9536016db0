#!/usr/bin/env bash
# backup.sh DATA OUT — back up an mxos-server while it runs (runbook:
# deploy/backup/README.md). OUT must not exist; it gets:
#   database.sqlite   DATA/mxos.db by SQLite's online backup, or
#   database.pgdump   pg_dump --format=custom of $MXOS_DATABASE (postgres://…)
#   data.tar          DATA without the database and the log key: the OSTree
#                     repository, registry tags and (without a bucket) blobs,
#                     signed channel metadata, the transparency log
#   bucket.tar        with MXOS_STORAGE naming a storage file of kind s3 (the
#                     server's --storage): every object of the bucket (under
#                     its prefix), copied with rclone — the served repository
#                     and the registry's blobs
#   secrets.tar       mode 0600: DATA/log-key, and the online keys directory
#                     when MXOS_ONLINE_KEYS names one. Keep it in the secret
#                     store (encrypted), apart from the rest.
#   SHA256SUMS
# The database is copied first, then DATA, then the bucket: everything the
# database names (releases, blobs of tags) is then in the copy. The release
# keys are never here: they stay with the release team.
# Needs sqlite3 (SQLite) or pg_dump (PostgreSQL), rclone (S3), tar, sha256sum.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: backup.sh DATA OUT" >&2; exit 2; }
DATA=$1 OUT=$2
[ -d "$DATA/repo" ] || { echo "backup: $DATA is not an mxos-server data directory (no repo/)" >&2; exit 1; }
# shellcheck source=deploy/backup/bucket.sh
. "$(dirname "$0")/bucket.sh"
BUCKET=
if [ -n "${MXOS_STORAGE:-}" ]; then
  bucket_remote "$MXOS_STORAGE"
fi
mkdir "$OUT"
umask 077
if [ -n "${MXOS_DATABASE:-}" ]; then
  pg_dump --format=custom --no-owner --file="$OUT/database.pgdump" "$MXOS_DATABASE"
else
  sqlite3 "$DATA/mxos.db" ".backup '$OUT/database.sqlite'"
fi
# The transparency log's marks before the log itself: a mark never claims
# an entry the copied log lacks (at worst an event is logged twice).
marks=()
for f in log-audit-seq log-release-keys; do [ -e "$DATA/$f" ] && marks+=("./$f"); done
tar -C "$DATA" -cf "$OUT/data.tar" "${marks[@]}" --files-from=/dev/null
tar -C "$DATA" --exclude=./mxos.db --exclude='./mxos.db-*' --exclude=./log-key \
  --exclude=./log-audit-seq --exclude=./log-release-keys -rf "$OUT/data.tar" .
if [ -n "$BUCKET" ]; then
  umask 022
  mkdir "$OUT/.bucket"
  rclone copy --quiet "$BUCKET" "$OUT/.bucket"
  tar -C "$OUT/.bucket" -cf "$OUT/bucket.tar" .
  rm -rf "$OUT/.bucket"
  umask 077
fi
secrets=()
[ -f "$DATA/log-key" ] && secrets+=(-C "$DATA" log-key)
if [ -n "${MXOS_ONLINE_KEYS:-}" ]; then
  secrets+=(-C "$(dirname "$MXOS_ONLINE_KEYS")" "$(basename "$MXOS_ONLINE_KEYS")")
fi
tar -cf "$OUT/secrets.tar" "${secrets[@]}" --files-from=/dev/null
(cd "$OUT" && sha256sum -- * >SHA256SUMS)
sync -f "$OUT/SHA256SUMS"
echo "backup: $OUT ($(du -sh "$OUT" | cut -f1)); keep secrets.tar in the secret store" >&2
