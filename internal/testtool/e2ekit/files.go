package e2ekit

import (
	"os"
	"testing"
	"time"
)

// FlipByte inverts the low bit of the byte at off (negative: from the end)
// in place, keeping the file's inode.
func FlipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += st.Size()
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// WaitLogSettled waits until server's transparency log checkpoint stops
// changing: the audit events reach the public log within a second or two,
// and a backup is taken once the log has settled (the runbook: no changes
// while it runs).
func WaitLogSettled(t testing.TB, server string) {
	t.Helper()
	for prev, deadline := "", time.Now().Add(30*time.Second); ; time.Sleep(1500 * time.Millisecond) {
		cp := string(HTTPGet(t, server+"/log/checkpoint"))
		if cp == prev {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the transparency log did not settle")
		}
		prev = cp
	}
}
