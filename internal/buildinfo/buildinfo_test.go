package buildinfo

import "testing"

func TestVersion(t *testing.T) {
	if Version() == "" {
		t.Fatal("empty version")
	}
	old := version
	defer func() { version = old }()
	version = "10.0.3"
	if Version() != "10.0.3" {
		t.Fatalf("link-time version ignored: %q", Version())
	}
}
