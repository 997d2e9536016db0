package ocitest

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// Entry is one path of a fixture tree.
type Entry struct {
	Path     string
	Dir      bool
	Body     string
	Link     string // symlink target
	Mode     int64
	UID, GID int
	Xattrs   map[string]string
}

// OSTree is a small OS-like tree: nested /usr directories, setuid and
// read-only modes, foreign owners, binary xattrs, absolute and relative
// symlinks, identical files (hardlinks in a layer) and an empty directory.
func OSTree() []Entry {
	return []Entry{
		{Path: "etc", Dir: true, Mode: 0o755},
		{Path: "etc/os-release", Body: "NAME=MxOS\nVERSION_ID=10\n", Mode: 0o644},
		{Path: "etc/shadow", Body: "root:*:19000::::::\n", Mode: 0o000},
		{Path: "usr", Dir: true, Mode: 0o755},
		{Path: "usr/bin", Dir: true, Mode: 0o755},
		{Path: "usr/bin/sh", Link: "bash", Mode: 0o777},
		{Path: "usr/bin/bash", Body: strings.Repeat("#!bash\x00", 2000), Mode: 0o755},
		{Path: "usr/bin/passwd", Body: "passwd binary", Mode: 0o4755,
			Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00" + strings.Repeat("\x00", 12)}},
		{Path: "usr/lib", Dir: true, Mode: 0o755},
		{Path: "usr/lib/modules", Dir: true, Mode: 0o755},
		{Path: "usr/lib/modules/6.12.0", Dir: true, Mode: 0o755},
		{Path: "usr/lib/modules/6.12.0/vmlinuz", Body: strings.Repeat("kernel", 5000), Mode: 0o644},
		{Path: "usr/lib/os-release", Body: "NAME=MxOS\nVERSION_ID=10\n", Mode: 0o644},
		{Path: "usr/lib/libc.so.6", Body: "libc", Mode: 0o755, Xattrs: map[string]string{"user.note": "one"}},
		{Path: "usr/lib64", Link: "lib", Mode: 0o777},
		{Path: "usr/share", Dir: true, Mode: 0o755, Xattrs: map[string]string{"user.dir": "shared"}},
		{Path: "usr/share/doc", Dir: true, Mode: 0o755},
		{Path: "usr/share/doc/README", Body: "léeme\n", Mode: 0o644, UID: 1000, GID: 1000},
		{Path: "usr/share/doc/COPYING", Body: "GPL-2.0-or-later\n", Mode: 0o644},
		{Path: "usr/share/doc/LICENSE", Body: "GPL-2.0-or-later\n", Mode: 0o644},
		{Path: "usr/share/empty", Dir: true, Mode: 0o700},
		{Path: "usr/local", Dir: true, Mode: 0o755},
		{Path: "usr/local/bin", Dir: true, Mode: 0o755},
		{Path: "usr/local/bin/tool", Body: "tool", Mode: 0o755},
		{Path: "var", Dir: true, Mode: 0o755},
		{Path: "var/tmp", Dir: true, Mode: 0o1777},
		{Path: "bin", Link: "usr/bin", Mode: 0o777},
		{Path: "sysroot", Dir: true, Mode: 0o755},
		{Path: "ostree", Link: "sysroot/ostree", Mode: 0o777},
	}
}

// Tar writes entries as a tarball.
func Tar(t testing.TB, entries []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Path, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		for k, v := range e.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		switch {
		case e.Dir:
			h.Typeflag, h.Name = tar.TypeDir, e.Path+"/"
		case e.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Commit stores entries as a commit with version and ref binding (not
// signed) and moves ref to it.
func Commit(t testing.TB, repo *ostree.Repo, ref, version string, ts time.Time, entries []Entry) ostree.Checksum {
	t.Helper()
	txn, err := repo.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	tree, meta, err := txn.WriteTreeFromTar(context.Background(), bytes.NewReader(Tar(t, entries)), ostree.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &ostree.Commit{
		Metadata: ostree.Metadata{
			{Key: ostree.MetaVersion, Value: ostree.StringVar(version)},
			{Key: ostree.MetaRefBinding, Value: ostree.StringsVar([]string{ref})},
		},
		Subject: "MxOS " + version, Timestamp: uint64(ts.Unix()), RootTree: tree, RootMeta: meta,
	}
	if prev, err := repo.ResolveRef(ref); err == nil {
		c.Parent = prev
	}
	cb, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := txn.WriteMetadata(ostree.ObjCommit, cb, ostree.Checksum{})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := txn.SetRef(ref, sum); err != nil {
		t.Fatal(err)
	}
	return sum
}
