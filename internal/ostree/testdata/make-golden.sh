#!/bin/sh
# Regenerates golden-repo/: a tiny archive repository written by the real
# ostree (Debian 12, ostree 2022.7). The tree is built here, so the test can
# rebuild the same tree and compare checksums without ostree installed.
# Usage: sh make-golden.sh   (from this directory)
set -eu
rm -rf golden-repo golden-tree
mkdir -p golden-tree/usr/bin golden-tree/etc golden-tree/empty "golden-tree/año"
printf 'hello world\n' > golden-tree/etc/motd
printf '#!/bin/sh\necho hola\n' > golden-tree/usr/bin/hola
chmod 0755 golden-tree/usr/bin/hola
: > golden-tree/etc/empty-file
chmod 0600 golden-tree/etc/empty-file
printf 'niño\n' > "golden-tree/año/niño ñ.txt"
ln -s ../etc/motd golden-tree/usr/motd
ln -s /etc/motd golden-tree/abs-link
chmod 0755 golden-tree golden-tree/usr golden-tree/usr/bin golden-tree/etc "golden-tree/año"
chmod 0700 golden-tree/empty
ostree --repo=golden-repo init --mode=archive
ostree --repo=golden-repo commit --branch=golden --owner-uid=0 --owner-gid=0 --no-xattrs \
  --timestamp='2024-01-01 00:00:00 UTC' --subject=golden --add-metadata-string=version=1.0 \
  --tree=dir=golden-tree
ostree --repo=golden-repo summary -u
rm -rf golden-tree golden-repo/tmp/* golden-repo/.lock
