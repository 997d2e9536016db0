package pull

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// TestListObjects: the listing finds exactly the well-formed object names,
// and ignores names whose object path would differ from them.
func TestListObjects(t *testing.T) {
	repo := newDst(t)
	txn, err := repo.Begin()
	if err != nil {
		t.Fatal(err)
	}
	dirmeta := getFixture(t).mustRead(t, ostree.ObjDirMeta)
	c, err := txn.WriteMetadata(ostree.ObjDirMeta, dirmeta, ostree.Checksum{})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := txn.Close(); err != nil {
		t.Fatal(err)
	}
	hex := c.String()
	junk := map[string]string{
		"uppercase":     strings.ToUpper(hex[2:]) + ".filez",
		"short":         hex[2:40] + ".filez",
		"unknown type":  hex[2:] + ".file",
		"no extension":  hex[2:],
		"not hex":       strings.Repeat("zz", 31) + ".dirtree",
		"temporary":     hex[2:] + ".filez.tmp",
		"commitmeta":    hex[2:] + ".commitmeta",
		"trailing junk": hex[2:] + "0.dirmeta",
	}
	for what, name := range junk {
		if err := os.WriteFile(filepath.Join(repo.Path(), "objects", hex[:2], name), nil, 0o644); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(repo.Path(), "objects", "zz"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := listObjects(repo)
	if err != nil {
		t.Fatal(err)
	}
	want := ostree.ObjectRef{Checksum: c, Type: ostree.ObjDirMeta}
	if len(got) != 1 || !got[want] {
		t.Fatalf("listObjects = %v, want only %v", got, want)
	}
	if !repo.HasObject(c, ostree.ObjDirMeta) {
		t.Fatal("the listed object is not stored")
	}
}

// mustRead returns the bytes of one stored object of type typ.
func (f *fixture) mustRead(t *testing.T, typ ostree.ObjectType) []byte {
	t.Helper()
	cm, err := f.repo.ReadCommit(f.stableC)
	if err != nil {
		t.Fatal(err)
	}
	c := cm.RootMeta
	if typ == ostree.ObjDirTree {
		c = cm.RootTree
	}
	b, err := f.repo.ReadMetadata(c, typ)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJobQueue: metadata is handed out before content, the queue ends
// when every job is done, and a failure stops it at once.
func TestJobQueue(t *testing.T) {
	q := newJobQueue()
	q.push(job{kind: jobFile, c: ostree.Checksum{1}})
	q.push(job{kind: jobTree, c: ostree.Checksum{2}})
	q.push(job{kind: jobMeta, c: ostree.Checksum{3}})
	var order []byte
	for {
		j, ok := q.next()
		if !ok {
			break
		}
		order = append(order, j.c[0])
		q.done()
	}
	if string(order) != "\x03\x02\x01" {
		t.Errorf("order %v, want metadata (newest first) before content: [3 2 1]", order)
	}

	q = newJobQueue()
	q.push(job{kind: jobFile})
	q.push(job{kind: jobFile})
	if _, ok := q.next(); !ok {
		t.Fatal("no job")
	}
	q.fail(os.ErrClosed)
	if _, ok := q.next(); ok {
		t.Error("a job was handed out after a failure")
	}
	if q.err != os.ErrClosed {
		t.Errorf("err = %v", q.err)
	}
}
