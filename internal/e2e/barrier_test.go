package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newBarrierSite is an updater site whose testing channel has the
// barrier 10.0.1 (channels/testing.yaml with a barriers entry, as a
// release team writes it), with 10.0.1 and 10.0.2 published after the
// device's 10.0.0: the branch's head is 10.0.2.
func newBarrierSite(t *testing.T) (s *updaterSite, v1, v2 string) {
	t.Helper()
	chDir := filepath.Join(t.TempDir(), "channels")
	copyDir(t, "../../channels", chDir)
	f, err := os.OpenFile(filepath.Join(chDir, "testing.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\nbarriers:\n  - version: \"10.0.1\"\n    reason: brings the new signing key\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s = newUpdaterSiteChannels(t, chDir)
	v1, v2 = s.publish(), s.publish()
	if v1 != "10.0.1" || v2 != "10.0.2" {
		t.Fatalf("published %s and %s", v1, v2)
	}
	return s, v1, v2
}

// TestBarrierBehindHead: a device on 10.0.0 must stop at the barrier
// 10.0.1 although the branch's head (the signed summary's commit) is
// already 10.0.2. The real server offers the barrier, the real
// mxos-updater downloads that exact commit by its checksum (the one the
// release-signed channel targets list), installs and boots it, and only
// then takes 10.0.2.
func TestBarrierBehindHead(t *testing.T) {
	s, v1, v2 := newBarrierSite(t)
	out := s.run("upgrade")
	if got := s.checkDevice(); got != v1 {
		t.Fatalf("after the first upgrade the device runs %q, want the barrier %s\n%s", got, v1, out)
	}
	if !strings.Contains(out, "Downloading version "+v1) {
		t.Errorf("the updater did not say it downloads the barrier:\n%s", out)
	}
	s.run("boot")
	if got := s.checkDevice(); got != v1 {
		t.Fatalf("after boot the device runs %q, want %s", got, v1)
	}
	out = s.run("upgrade")
	if got := s.checkDevice(); got != v2 {
		t.Fatalf("after the second upgrade the device runs %q, want %s\n%s", got, v2, out)
	}
	s.run("boot")
}
