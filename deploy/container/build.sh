#!/usr/bin/env bash
# build.sh [TAG] — build the mxos-server image (Containerfile) with
# podman, or docker when podman is missing. The binaries are compiled
# here, static (CGO_ENABLED=0), with the README's build tags.
# Environment: PODMAN_FLAGS, podman's global flags (e.g. "--storage-driver
# vfs" where overlay is not available), BUILD_FLAGS, the build's (e.g.
# "--isolation chroot").
set -euo pipefail
TAG=${1:-localhost/mxos-server:dev}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
(cd "$repo" && CGO_ENABLED=0 go build \
  -tags containers_image_openpgp,containers_image_storage_stub,containers_image_docker_daemon_stub \
  -o "$ctx/" ./cmd/mxos-server ./cmd/mxosctl)
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
cp -r "$repo/channels" "$ctx/channels"
cp "$here/Containerfile" "$ctx/"
engine=podman
command -v podman >/dev/null 2>&1 || engine=docker
# shellcheck disable=SC2086
"$engine" ${PODMAN_FLAGS:-} build ${BUILD_FLAGS:-} -t "$TAG" -f "$ctx/Containerfile" "$ctx"
