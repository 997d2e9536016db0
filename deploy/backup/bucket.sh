# bucket.sh — sourced by backup.sh and restore.sh: reads a storage file
# (mxos-server --storage, README "Storage") and sets rclone up to reach its
# bucket through environment variables only (no rclone.conf; the keys are
# read from their files and never appear on a command line).
#
# bucket_remote FILE sets BUCKET to the rclone path of the bucket and
# prefix (mxos:BUCKET/PREFIX), or to nothing for kind dir (call it
# directly, not in $(…): its exports must reach rclone). The file's format is the
# flat one the README shows: `key: value` lines under `storage:`.

# storage_value FILE KEY: the value of KEY, without quotes and comments.
storage_value() {
  sed -n "s/^[[:space:]]*$2:[[:space:]]*//p" "$1" | sed -e 's/[[:space:]]#.*$//' -e 's/[[:space:]]*$//' \
    -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/" | tail -n 1
}

bucket_remote() {
  local file=$1 kind bucket prefix endpoint region ak sk f
  BUCKET=
  [ -f "$file" ] || { echo "storage file $file not found" >&2; return 1; }
  kind=$(storage_value "$file" kind)
  case "$kind" in
    "")
      # No kind line: the default (dir), unless the file names a bucket in
      # a form read here differently (flow style, one line): refuse
      # rather than leave the bucket out of the backup.
      if grep -q 'bucket\|s3' "$file"; then
        echo "storage file $file: cannot read it here; write one key: value per line, as the README shows" >&2
        return 1
      fi
      return 0 ;;
    dir) return 0 ;;
    s3) ;;
    *) echo "storage file $file: unknown kind $kind" >&2; return 1 ;;
  esac
  command -v rclone >/dev/null || { echo "rclone is needed to copy the bucket (apt-get install rclone)" >&2; return 1; }
  bucket=$(storage_value "$file" bucket)
  prefix=$(storage_value "$file" prefix)
  endpoint=$(storage_value "$file" endpoint)
  region=$(storage_value "$file" region)
  ak=$(storage_value "$file" access_key_file)
  sk=$(storage_value "$file" secret_key_file)
  [ -n "$bucket" ] || { echo "storage file $file: no bucket" >&2; return 1; }
  export RCLONE_CONFIG_MXOS_TYPE=s3 RCLONE_CONFIG_MXOS_ENV_AUTH=false RCLONE_CONFIG_MXOS_NO_CHECK_BUCKET=true
  if [ -n "$endpoint" ]; then
    export RCLONE_CONFIG_MXOS_PROVIDER=Other RCLONE_CONFIG_MXOS_ENDPOINT=$endpoint RCLONE_CONFIG_MXOS_FORCE_PATH_STYLE=true
  else
    export RCLONE_CONFIG_MXOS_PROVIDER=AWS
  fi
  export RCLONE_CONFIG_MXOS_REGION=${region:-us-east-1}
  # rclone's S3 client fails on AWS_CA_BUNDLE ("unsupported transport"):
  # the same CA file is given to rclone its own way.
  if [ -n "${AWS_CA_BUNDLE:-}" ]; then
    export RCLONE_CA_CERT=$AWS_CA_BUNDLE
    unset AWS_CA_BUNDLE
  fi
  for f in "$ak" "$sk"; do
    [ -z "$f" ] || [ -r "$f" ] || { echo "storage file $file: cannot read the key file $f" >&2; return 1; }
  done
  if [ -n "$ak" ]; then
    RCLONE_CONFIG_MXOS_ACCESS_KEY_ID=$(head -n 1 "$ak")
    RCLONE_CONFIG_MXOS_SECRET_ACCESS_KEY=$(head -n 1 "$sk")
    export RCLONE_CONFIG_MXOS_ACCESS_KEY_ID RCLONE_CONFIG_MXOS_SECRET_ACCESS_KEY
  fi
  BUCKET="mxos:$bucket/${prefix%/}"
}
