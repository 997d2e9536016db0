package ostree

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func treeOf(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func contentSum(t *testing.T, r *Repo, commit Checksum, name string) Checksum {
	t.Helper()
	cm, err := r.ReadCommit(commit)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := r.ReadDirTree(cm.RootTree)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dt.Files {
		if f.Name == name {
			return f.Checksum
		}
	}
	t.Fatalf("%s not in commit %s", name, commit)
	return Checksum{}
}

// Prune removes what neither a ref nor a kept commit reaches, keeps what
// they share, and leaves a repository that fscks clean.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	c1 := commitDir(t, r, treeOf(t, map[string]string{"shared": "in one and two", "one": "only in one"}), rootOwned)
	c2 := commitDir(t, r, treeOf(t, map[string]string{"shared": "in one and two", "two": "only in two"}), rootOwned)
	c3 := commitDir(t, r, treeOf(t, map[string]string{"three": "only in three"}), rootOwned) // ref "test"
	txn, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.WriteCommitMeta(c1, Metadata{}.Set("note", StringVar("signed once"))); err != nil {
		t.Fatal(err)
	}
	txn.Close()
	only1 := contentSum(t, r, c1, "one")
	shared := contentSum(t, r, c1, "shared")

	st, err := r.Prune(ctx, []Checksum{c2})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []ObjectRef{{c1, ObjCommit}, {c1, ObjCommitMeta}, {only1, ObjFile}} {
		if r.HasObject(gone.Checksum, gone.Type) {
			t.Errorf("%s.%s survived the prune", gone.Checksum, gone.Type)
		}
	}
	if !r.HasObject(shared, ObjFile) {
		t.Error("content shared with a kept commit was pruned")
	}
	for _, c := range []Checksum{c2, c3} {
		if err := r.CheckComplete(c); err != nil {
			t.Errorf("kept commit %s: %v", c, err)
		}
	}
	// c1's commit, commitmeta, root dirtree and its file "one" at least.
	if st.Objects < 4 || st.Bytes <= 0 {
		t.Errorf("stats %+v", st)
	}
	rep, err := r.Fsck(ctx, FsckOptions{})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck after prune: %v %v", err, rep.Errors)
	}
	if st, err := r.Prune(ctx, []Checksum{c2}); err != nil || st.Objects != 0 {
		t.Fatalf("second prune: %+v %v", st, err)
	}
	// Without c2 in keep only the ref's commit stays.
	if _, err := r.Prune(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if r.HasObject(c2, ObjCommit) || !r.HasObject(c3, ObjCommit) {
		t.Fatal("a prune with no keep list must keep exactly what the refs reach")
	}
}

// A commit to keep that is missing or incomplete stops the prune before
// anything is deleted.
func TestPruneRefusesIncompleteKeep(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	c1 := commitDir(t, r, treeOf(t, map[string]string{"a": "one"}), rootOwned)
	commitDir(t, r, treeOf(t, map[string]string{"b": "two"}), rootOwned)
	before := listObjects(t, r)
	var missing Checksum
	missing[0] = 0xab
	if _, err := r.Prune(ctx, []Checksum{missing}); err == nil {
		t.Fatal("a missing keep commit was accepted")
	}
	if after := listObjects(t, r); after != before {
		t.Fatalf("a refused prune deleted objects:\n%s\n---\n%s", before, after)
	}
	// c1 made incomplete: one of its content objects removed.
	only := contentSum(t, r, c1, "a")
	if err := os.Remove(r.ObjectFile(only, ObjFile)); err != nil {
		t.Fatal(err)
	}
	before = listObjects(t, r)
	if _, err := r.Prune(ctx, []Checksum{c1}); err == nil {
		t.Fatal("an incomplete keep commit was accepted")
	}
	if after := listObjects(t, r); after != before {
		t.Fatalf("a refused prune deleted objects:\n%s\n---\n%s", before, after)
	}
}
