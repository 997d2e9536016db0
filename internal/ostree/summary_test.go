package ostree

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeSign "signs" with a hash, enough to tell which bytes were signed.
func fakeSign(b []byte) (Metadata, error) {
	h := sha256.Sum256(b)
	return Metadata{}.Set("test.sigs", BytesListVar([][]byte{h[:]})), nil
}

func sigsOf(t *testing.T, r *Repo) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Path(), "summary.sig"))
	if err != nil {
		t.Fatal(err)
	}
	md, err := ParseMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := md.ByteArrays("test.sigs")
	return v
}

func signedBy(sigs [][]byte, data []byte) bool {
	h := sha256.Sum256(data)
	for _, s := range sigs {
		if string(s) == string(h[:]) {
			return true
		}
	}
	return false
}

func writeSummary(t *testing.T, r *Repo) {
	t.Helper()
	txn, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.WriteSummary(time.Unix(1, 0), fakeSign); err != nil {
		t.Fatal(err)
	}
}

func TestSummarySwap(t *testing.T) {
	r := newRepo(t)
	commitDir(t, r, writeGoldenTree(t), rootOwned)
	writeSummary(t, r)
	_, first, err := r.ReadSummary()
	if err != nil {
		t.Fatal(err)
	}
	if !signedBy(sigsOf(t, r), first) {
		t.Fatal("summary.sig does not sign the summary")
	}
	commitDir(t, r, t.TempDir(), rootOwned) // moves the ref
	writeSummary(t, r)
	_, second, _ := r.ReadSummary()
	if string(first) == string(second) {
		t.Fatal("summary did not change after the ref moved")
	}
	if sigs := sigsOf(t, r); len(sigs) != 1 || !signedBy(sigs, second) {
		t.Fatal("summary.sig does not sign the new summary alone")
	}
	if _, err := os.Stat(filepath.Join(r.Path(), summaryNext)); !os.IsNotExist(err) {
		t.Fatal("journal left behind")
	}
}

// A crash between the journal commit and the last rename is finished by
// the next writer.
func TestSummaryJournalRollsForward(t *testing.T) {
	for _, cut := range []string{"journaled", "sig-removed", "summary-moved"} {
		t.Run(cut, func(t *testing.T) {
			r := newRepo(t)
			commitDir(t, r, writeGoldenTree(t), rootOwned)
			writeSummary(t, r)
			commitDir(t, r, t.TempDir(), rootOwned)
			// Build the journal as WriteSummary would, then stop at cut.
			s, _ := r.BuildSummary(time.Unix(2, 0))
			b, _ := s.Marshal()
			md, _ := fakeSign(b)
			sig, _ := MarshalMetadata(md)
			next := filepath.Join(r.Path(), summaryNext)
			os.MkdirAll(next, 0o755)
			os.WriteFile(filepath.Join(next, "summary"), b, 0o644)
			os.WriteFile(filepath.Join(next, "summary.sig"), sig, 0o644)
			if cut != "journaled" {
				os.Remove(filepath.Join(r.Path(), "summary.sig"))
			}
			if cut == "summary-moved" {
				os.Rename(filepath.Join(next, "summary"), filepath.Join(r.Path(), "summary"))
			}
			txn, err := r.Begin()
			if err != nil {
				t.Fatal(err)
			}
			txn.Close()
			_, got, err := r.ReadSummary()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(b) || !signedBy(sigsOf(t, r), got) {
				t.Fatal("summary swap was not finished")
			}
			if _, err := os.Stat(next); !os.IsNotExist(err) {
				t.Fatal("journal left behind")
			}
			rep, err := r.Fsck(context.Background(), FsckOptions{})
			if err != nil || len(rep.Errors) > 0 {
				t.Fatalf("fsck: %v %v", err, rep.Errors)
			}
		})
	}
}
