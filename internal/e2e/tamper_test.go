package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// TestStockPullRefusesTamperedObject flips one byte of a stored object on
// the server's disk after a good publish (inside a .filez's deflate data, a
// .dirtree, a .dirmeta, the .commit) and checks that a fresh stock client
// refuses the pull, naming the corrupted object's checksum, and that our
// own fsck finds the same object.
func TestStockPullRefusesTamperedObject(t *testing.T) {
	requireOstreeGPG(t)
	keys := newKeys(t)
	src := filepath.Join(t.TempDir(), "src")
	makeRichTree(t, src, treeSpec{seed: 4})

	// pick returns the object to corrupt and the offset of the byte.
	type pick func(t *testing.T, s *site, cm *ostree.Commit, commit ostree.Checksum) (ostree.Checksum, ostree.ObjectType, int64)
	cases := []struct {
		name    string
		pick    pick
		wantErr string
	}{
		{
			// usr/share/random.bin is incompressible: its .filez holds
			// stored deflate blocks, so the flipped byte changes the
			// content without breaking the deflate stream.
			name: "filez", wantErr: "Corrupted file object",
			pick: func(t *testing.T, s *site, cm *ostree.Commit, _ ostree.Checksum) (ostree.Checksum, ostree.ObjectType, int64) {
				objs := treeObjects(t, s.repo, cm.RootTree, cm.RootMeta)
				c, err := ostree.ParseChecksum(objs["usr/share/random.bin"])
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(objectFile(s.repoDir(), c, ostree.ObjFile))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() < 256<<10 {
					t.Fatalf("random.bin .filez is %d bytes: not stored uncompressed as expected", fi.Size())
				}
				return c, ostree.ObjFile, fi.Size() / 2 // well past the header
			},
		},
		{
			name: "dirtree", wantErr: "Corrupted dirtree object",
			pick: func(t *testing.T, s *site, cm *ostree.Commit, _ ostree.Checksum) (ostree.Checksum, ostree.ObjectType, int64) {
				dt, err := s.repo.ReadDirTree(cm.RootTree)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range dt.Dirs {
					if d.Name == "usr" {
						return d.Tree, ostree.ObjDirTree, 0 // a byte of the first name
					}
				}
				t.Fatal("no usr/ in the tree")
				return ostree.Checksum{}, 0, 0
			},
		},
		{
			name: "dirmeta", wantErr: "Corrupted dirmeta object",
			pick: func(t *testing.T, s *site, cm *ostree.Commit, _ ostree.Checksum) (ostree.Checksum, ostree.ObjectType, int64) {
				return cm.RootMeta, ostree.ObjDirMeta, 10 // inside the mode
			},
		},
		{
			name: "commit", wantErr: "Corrupted commit object",
			pick: func(t *testing.T, s *site, cm *ostree.Commit, c ostree.Checksum) (ostree.Checksum, ostree.ObjectType, int64) {
				return c, ostree.ObjCommit, -40 // inside the root tree checksum
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, keys)
			res := s.publish(t, "10.0.1", src)
			cm, err := s.repo.ReadCommit(res.Commit)
			if err != nil {
				t.Fatal(err)
			}
			obj, typ, off := tc.pick(t, s, cm, res.Commit)
			flipByte(t, objectFile(s.repoDir(), obj, typ), off)

			url, _ := serve(t, s.data)
			c := newClient(t, toolEnv(t), url, gpgRemote(keys.pgpPub)...)
			out, err := c.run("pull", "origin", testRef)
			if err == nil {
				t.Fatalf("pull of a repository with a corrupted %s succeeded:\n%s", typ, out)
			}
			if !strings.Contains(out, tc.wantErr) || !strings.Contains(out, obj.String()) {
				t.Errorf("pull failed without naming the corrupted %s %s (%q):\n%s", typ, obj, tc.wantErr, out)
			}
			t.Logf("refused as expected: %s", strings.TrimSpace(out))

			// Our fsck reports exactly that object as corrupt.
			rep, err := s.repo.Fsck(t.Context(), ostree.FsckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range rep.Errors {
				var oe *ostree.ObjectError
				if errors.As(e, &oe) && oe.Checksum == obj && oe.Type == typ && errors.Is(e, ostree.ErrCorrupt) {
					found = true
				}
			}
			if !found {
				t.Errorf("our fsck did not report %s.%s as corrupt: %v", obj, typ, errors.Join(rep.Errors...))
			}
		})
	}
}
