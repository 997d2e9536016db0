package release

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

func TestCheckMode(t *testing.T) {
	const reg, dir, lnk = 0o100000, 0o040000, 0o120000
	cases := []struct {
		path string
		mode uint32
		want string
	}{
		{"/etc/shadow", reg | 0o640, ""},
		{"/etc/shadow", reg, ""}, // mode 0000
		{"/etc/shadow", reg | 0o644, "world-readable"},
		{"/etc/shadow", reg | 0o602, "world-writable"},
		{"/etc/gshadow", reg | 0o604, "world-readable"},
		{"/etc/shadow-", reg | 0o644, "world-readable"},
		{"/etc/gshadow-", reg | 0o644, "world-readable"},
		{"/usr/etc/shadow", reg | 0o644, "world-readable"},
		{"/usr/etc/gshadow", reg | 0o644, "world-readable"},
		{"/usr/etc/gshadow", reg | 0o640, ""},
		{"/etc/shadow", lnk | 0o777, ""},           // a symlink's mode means nothing
		{"/etc/shadow", dir | 0o755, ""},           // not a file
		{"/etc/passwd", reg | 0o644, ""},           // meant to be readable
		{"/usr/share/doc/shadow", reg | 0o644, ""}, // only etc and usr/etc
		{"/etc/shadow.d/shadow", reg | 0o644, ""},  // only directly in etc
		{"/usr/bin/passwd", reg | 0o4755, ""},      // setuid, as shipped
		{"/usr/bin/passwd", reg | 0o4757, "a world-writable setuid file"},
		{"/usr/bin/wall", reg | 0o2757, "a world-writable setgid file"},
		{"/usr/bin/both", reg | 0o6777, "a world-writable setuid file"},
		{"/usr/bin/wall", reg | 0o2775, ""}, // group-writable: not this rule
		{"/tmp", dir | 0o1777, ""},          // sticky dir
		{"/var/mail", dir | 0o2777, ""},     // directories are not judged
		{"/usr/bin/plain", reg | 0o777, ""}, // writable but not set-id
	}
	for _, tc := range cases {
		if got := CheckMode(tc.path, tc.mode); got != tc.want {
			t.Errorf("CheckMode(%s, %o) = %q, want %q", tc.path, tc.mode, got, tc.want)
		}
	}
}

func TestParseModeExceptions(t *testing.T) {
	ex, err := ParseModeExceptions([]byte("# intended\n/etc/shadow\n\n  usr/bin/odd  \r\n#/etc/gshadow\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 2 || !ex["/etc/shadow"] || !ex["/usr/bin/odd"] || ex["/etc/gshadow"] {
		t.Fatalf("parsed %v", ex)
	}
	for _, bad := range []string{"/", "../etc/shadow", "/etc/../shadow", "/etc//shadow", "/etc/", "./etc/shadow", "a\x00b"} {
		if _, err := ParseModeExceptions([]byte("# ok\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: %v, want an error naming line 2", bad, err)
		}
	}
	if _, err := ParseModeExceptions(make([]byte, maxExceptionsFile+1)); err == nil {
		t.Error("a huge file was accepted")
	}
	if _, err := LoadModeExceptions(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "--allow-mode-exceptions") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParseModeExceptions(f *testing.F) {
	f.Add([]byte("/etc/shadow\n# c\n\nusr/etc/gshadow\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ex, err := ParseModeExceptions(b)
		if err != nil {
			return
		}
		for p := range ex {
			if !strings.HasPrefix(p, "/") || filepath.Clean(p) != p || p == "/" {
				t.Fatalf("accepted %q", p)
			}
		}
	})
}

// badTree writes a tree with each problem the policy refuses.
func badTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bad")
	for _, d := range []string{"etc", "usr/etc", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, mode os.FileMode) {
		f := filepath.Join(dir, p)
		if err := os.WriteFile(f, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil { // not subject to the umask
			t.Fatal(err)
		}
	}
	write("etc/shadow", 0o644)
	write("usr/etc/gshadow", 0o644)
	write("usr/bin/evil", 0o777|os.ModeSetuid)
	write("etc/passwd", 0o644)
	return dir
}

// tarOf writes dir as an uncompressed tarball with the modes as they are.
func tarOf(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tree.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(dir, p)
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			_, err = tw.Write(b)
		}
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// foreignRepoOf commits dir into a new repository outside the policy, as
// another build system would, and returns the ostree: source naming it.
func foreignRepoOf(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "foreign")
	r, err := ostree.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	txn, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	tree, meta, err := txn.WriteTreeFromDir(context.Background(), dir, ostree.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := txn.WriteCommit(&ostree.Commit{Subject: "foreign", Timestamp: 1, RootTree: tree, RootMeta: meta})
	if err == nil {
		err = txn.Commit()
	}
	if err == nil {
		err = txn.SetRef("build/x86_64", c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return "ostree:" + path + ":build/x86_64"
}

// TestPublishModePolicy: failure 9 of issue 9. For every source kind, a
// tree with a world-readable shadow file or a world-writable setuid file
// is refused, naming each file and its problem, and nothing is published;
// the same tree goes through when every such path is listed as an
// exception.
func TestPublishModePolicy(t *testing.T) {
	dir := badTree(t)
	sources := map[string]string{"directory": dir, "tarball": tarOf(t, dir), "ostree": foreignRepoOf(t, dir)}
	for kind, src := range sources {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t)
			before := f.publish(t, "10.0.1")
			_, err := f.pub.Publish(context.Background(), Request{Ref: ref, Version: "10.0.2", Source: src})
			var me *ModeError
			if !errors.Is(err, ErrModePolicy) || !errors.As(err, &me) {
				t.Fatalf("publish: %v, want a mode policy refusal", err)
			}
			for _, want := range []string{"/etc/shadow is world-readable (mode 0644)", "/usr/etc/gshadow is world-readable (mode 0644)",
				"/usr/bin/evil is a world-writable setuid file (mode 4777)", "--allow-mode-exceptions"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message lacks %q: %v", want, err)
				}
			}
			if strings.Contains(err.Error(), "passwd") || len(me.Problems) != 3 {
				t.Errorf("problems: %+v", me.Problems)
			}
			if cur, err := f.repo.ResolveRef(ref); err != nil || cur != before.Commit {
				t.Fatalf("ref moved: %s %v", cur, err)
			}
			// Two exceptions are not enough; all three are.
			_, err = f.pub.Publish(context.Background(), Request{Ref: ref, Version: "10.0.2", Source: src,
				ModeExceptions: ModeExceptions{"/etc/shadow": true, "/usr/etc/gshadow": true}})
			if !errors.As(err, &me) || len(me.Problems) != 1 || me.Problems[0].Path != "/usr/bin/evil" {
				t.Fatalf("with two exceptions: %v", err)
			}
			res, err := f.pub.Publish(context.Background(), Request{Ref: ref, Version: "10.0.2", Source: src,
				ModeExceptions: ModeExceptions{"/etc/shadow": true, "/usr/etc/gshadow": true, "/usr/bin/evil": true}})
			if err != nil {
				t.Fatal(err)
			}
			if cur, _ := f.repo.ResolveRef(ref); cur != res.Commit {
				t.Fatalf("ref %s, want %s", cur, res.Commit)
			}
		})
	}
}

// TestRemotePublishModePolicy: remote publishing refuses the tree before
// it signs or uploads anything.
func TestRemotePublishModePolicy(t *testing.T) {
	ks := newKeyset(t)
	srv := newFakeServer(t, ks.verifiers)
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	rem := &Remote{Server: srv, Work: work, Signers: ks.signers}
	_, _, err = rem.Publish(context.Background(), RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: testingRef,
		Version: "10.0.1", Source: badTree(t)})
	if !errors.Is(err, ErrModePolicy) || !strings.Contains(err.Error(), "/etc/shadow is world-readable") {
		t.Fatalf("remote publish: %v", err)
	}
	if srv.nextID != 0 || srv.puts != 0 || len(srv.releases) != 0 {
		t.Fatalf("the server was asked for something: %d sessions, %d objects, %d releases", srv.nextID, srv.puts, len(srv.releases))
	}
	if refs, _ := work.ListRefs(); len(refs) != 0 {
		t.Fatalf("work repository refs: %v", refs)
	}
}
