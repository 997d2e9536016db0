#!/bin/sh
# Regenerates the golden GVariant fixtures in this directory with the real
# ostree CLI (written against Debian 12's ostree 2022.7). Needs ostree, gpg,
# python3 (for user xattrs, as setfattr may be missing) and xz.
#
# Commit, dirtree, dirmeta and filez bytes are deterministic; the summary,
# commitmeta (GPG signature), delta superblocks and delta index change on
# every run because they embed signatures or generation times.
set -eu

out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022

# Throwaway signing key.
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'MxOS Fixture <fixture@example.invalid>' ed25519 sign never
keyid=$(gpg --list-keys --with-colons | awk -F: '/^fpr/ { print $10; exit }')

# A tiny tree: regular, executable, empty, symlink, subdirectory, non-ASCII
# name, and a file with user xattrs (listed out of order on purpose).
tree="$work/tree"
mkdir -p "$tree/sub"
printf 'hello world\n' > "$tree/hello.txt"
printf '#!/bin/sh\necho hi\n' > "$tree/run.sh"
chmod 0755 "$tree/run.sh"
: > "$tree/empty"
ln -s hello.txt "$tree/link"
printf '\303\261and\303\272\n' > "$tree/sub/a$(printf '\303\261')o.txt"
printf 'attrs\n' > "$tree/sub/attr.txt"
python3 -c 'import os, sys
os.setxattr(sys.argv[1], "user.foo", b"bar")
os.setxattr(sys.argv[1], "user.abc", b"xyz\x00\x01")' "$tree/sub/attr.txt"
chmod 0755 "$tree" "$tree/sub"

repo="$work/repo"
ostree init --repo="$repo" --mode=archive
c1=$(ostree commit --repo="$repo" -b main --owner-uid=0 --owner-gid=0 \
	--timestamp='2024-01-01 00:00:00 UTC' -s subject --body='body text' \
	--add-metadata-string=version=1.0 \
	--add-detached-metadata-string=mxos.test=value \
	--gpg-sign="$keyid" --gpg-homedir="$GNUPGHOME" "$tree")

# A second commit, child of the first, for a from-delta.
printf 'hello again\n' > "$tree/hello.txt"
c2=$(ostree commit --repo="$repo" -b main --owner-uid=0 --owner-gid=0 \
	--timestamp='2024-01-02 00:00:00 UTC' -s second \
	--add-metadata-string=version=1.1 "$tree")

ostree static-delta generate --repo="$repo" --empty --to="$c1"
ostree static-delta generate --repo="$repo" --inline --from="$c1" --to="$c2"
ostree summary --repo="$repo" -u --gpg-sign="$keyid" --gpg-homedir="$GNUPGHOME"

obj() { # obj CHECKSUM SUFFIX
	echo "$repo/objects/$(echo "$1" | cut -c1-2)/$(echo "$1" | cut -c3-).$2"
}
b64() { # modified base64 of a hex checksum, as in delta paths
	echo "$1" | xxd -r -p | base64 -w0 | tr -d '=' | tr '/' '_'
}

set -- $(ostree ls --repo="$repo" -C -d "$c1" /)
rootTree=$5 rootMeta=$6
set -- $(ostree ls --repo="$repo" -C -d "$c1" /sub)
subTree=$5
set -- $(ostree ls --repo="$repo" -C "$c1" /hello.txt)
hello=$5
set -- $(ostree ls --repo="$repo" -C "$c1" /link)
link=$5
set -- $(ostree ls --repo="$repo" -C "$c1" /sub/attr.txt)
attr=$5

cp "$(obj "$c1" commit)" "$out/commit1.commit"
cp "$(obj "$c2" commit)" "$out/commit2.commit"
cp "$(obj "$c1" commitmeta)" "$out/commit1.commitmeta"
cp "$(obj "$rootTree" dirtree)" "$out/root.dirtree"
cp "$(obj "$subTree" dirtree)" "$out/sub.dirtree"
cp "$(obj "$rootMeta" dirmeta)" "$out/root.dirmeta"
cp "$(obj "$hello" filez)" "$out/hello.filez"
cp "$(obj "$link" filez)" "$out/link.filez"
cp "$(obj "$attr" filez)" "$out/xattr.filez"
cp "$repo/summary" "$out/summary"
cp "$repo/summary.sig" "$out/summary.sig"

t1=$(b64 "$c1") t2=$(b64 "$c2")
scratch="$repo/deltas/$(echo "$t1" | cut -c1-2)/$(echo "$t1" | cut -c3-)"
cp "$scratch/superblock" "$out/scratch.superblock"
# Part files are 'x' followed by an xz stream; keep the decompressed payload.
tail -c +2 "$scratch/0" | xz -dc > "$out/scratch.part0"
cp "$repo/deltas/$(echo "$t1" | cut -c1-2)/$(echo "$t1" | cut -c3-)-$t2/superblock" "$out/inline.superblock"
if [ -d "$repo/delta-indexes" ]; then
	cp "$repo/delta-indexes/$(echo "$t2" | cut -c1-2)/$(echo "$t2" | cut -c3-).index" "$out/delta.index"
fi

cat > "$out/fixtures.env" <<EOF
COMMIT1=$c1
COMMIT2=$c2
ROOT_DIRTREE=$rootTree
ROOT_DIRMETA=$rootMeta
SUB_DIRTREE=$subTree
HELLO_FILE=$hello
LINK_FILE=$link
XATTR_FILE=$attr
EOF
