package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const goodCommit = "49f9ad6a82279373c490edc7f0256fda91f92ceaae572bd24a70e0daa56ee4c2"

func goodManifest() Manifest {
	return Manifest{Format: Format, Channel: "edu", Arch: "x86_64", Version: "10.0.3", Ref: "mxos/10/x86_64/edu",
		Commit: goodCommit, Created: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
}

func TestManifestRoundTrip(t *testing.T) {
	m := goodManifest()
	m.From = []Base{{Version: "10.0.1", Commit: strings.Repeat("ab", 32)}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, m) {
		t.Errorf("round trip: %+v, want %+v", *got, m)
	}
}

func TestParseManifestRefuses(t *testing.T) {
	base := goodManifest()
	b, _ := base.Marshal()
	cases := []struct {
		name, json, want string
	}{
		{"empty", "", "EOF"},
		{"not json", "hola", "invalid character"},
		{"unknown field", strings.Replace(string(b), `"format"`, `"extra": 1, "format"`, 1), "unknown field"},
		{"trailing data", string(b) + "{}", "data after the manifest"},
		{"format 2", strings.Replace(string(b), `"format": 1`, `"format": 2`, 1), "format 2"},
		{"uppercase commit", strings.Replace(string(b), goodCommit, strings.ToUpper(goodCommit), 1), "64 lowercase hex"},
		{"short commit", strings.Replace(string(b), goodCommit, goodCommit[:12], 1), "64 lowercase hex"},
		{"bad version", strings.Replace(string(b), `"10.0.3"`, `"diez"`, 1), "version"},
		{"ref for another channel", strings.Replace(string(b), "x86_64/edu", "x86_64/stable", 1), "not mxos/<major>/x86_64/edu"},
		{"ref for another arch", strings.Replace(string(b), "mxos/10/x86_64", "mxos/10/aarch64", 1), "not mxos/<major>/x86_64/edu"},
		{"channel with a slash", strings.Replace(string(b), `"channel": "edu"`, `"channel": "../edu"`, 1), "channel"},
		{"from itself", strings.Replace(string(b), `"created"`, `"from": [{"version": "10.0.2", "commit": "`+goodCommit+`"}], "created"`, 1), "from commit"},
		{"from a bad version", strings.Replace(string(b), `"created"`, `"from": [{"version": "", "commit": "`+strings.Repeat("ab", 32)+`"}], "created"`, 1), "from version"},
		{"too large", string(b) + strings.Repeat(" ", MaxManifestSize), "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(c.json))
			if err == nil || !errors.Is(err, ErrBadManifest) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want ErrBadManifest saying %q", err, c.want)
			}
		})
	}
}

// Open refuses a directory that is not a whole bundle, and a manifest
// that is a symlink out of the bundle.
func TestOpenRefuses(t *testing.T) {
	m := goodManifest()
	b, _ := m.Marshal()
	mk := func(t *testing.T, files map[string]string, dirs ...string) string {
		dir := t.TempDir()
		for _, d := range dirs {
			os.MkdirAll(filepath.Join(dir, d), 0o755)
		}
		for n, c := range files {
			os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
		}
		return dir
	}
	t.Run("whole", func(t *testing.T) {
		if _, err := Open(mk(t, map[string]string{ManifestFile: string(b)}, RepoDir, MetadataDir)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no manifest", func(t *testing.T) {
		if _, err := Open(mk(t, nil, RepoDir, MetadataDir)); !errors.Is(err, ErrNotBundle) {
			t.Errorf("error %v, want ErrNotBundle", err)
		}
	})
	t.Run("no repo", func(t *testing.T) {
		if _, err := Open(mk(t, map[string]string{ManifestFile: string(b)}, MetadataDir)); !errors.Is(err, ErrNotBundle) {
			t.Errorf("error %v, want ErrNotBundle", err)
		}
	})
	t.Run("manifest links outside", func(t *testing.T) {
		outside := filepath.Join(t.TempDir(), "m.json")
		os.WriteFile(outside, b, 0o644)
		dir := mk(t, nil, RepoDir, MetadataDir)
		if err := os.Symlink(outside, filepath.Join(dir, ManifestFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir); !errors.Is(err, ErrNotBundle) {
			t.Errorf("error %v, want ErrNotBundle", err)
		}
	})
}

// FuzzParseManifest: any bytes give a manifest that validates and
// survives a round trip, or ErrBadManifest; never a panic.
func FuzzParseManifest(f *testing.F) {
	m := goodManifest()
	b, _ := m.Marshal()
	f.Add(b)
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("error %v does not wrap ErrBadManifest", err)
			}
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("a parsed manifest does not marshal: %v", err)
		}
		again, err := ParseManifest(out)
		if err != nil || !again.Created.Equal(m.Created) || again.Commit != m.Commit || again.Ref != m.Ref {
			t.Fatalf("round trip: %+v %v", again, err)
		}
	})
}
