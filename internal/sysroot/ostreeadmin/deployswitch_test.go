package ostreeadmin

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// recordingOstree is an ostree that logs each `admin` subcommand to a file
// before running the real one.
func recordingOstree(t *testing.T) (bin, log string) {
	t.Helper()
	real, err := exec.LookPath("ostree")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, log = filepath.Join(dir, "ostree"), filepath.Join(dir, "calls")
	script := "#!/bin/sh\n[ \"$1\" = admin ] && echo \"$2\" >>" + log + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

func adminCalls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(log)
	return strings.Fields(string(b))
}

// DeploySwitch is Deploy then Switch with one `ostree admin deploy` and no
// undeploy; the backend's pending boot, the previous default and the boot
// counter are recorded, and recorded(name) runs, before the default moves.
func TestDeploySwitch(t *testing.T) {
	ctx := context.Background()
	bin, calls := recordingOstree(t)
	s := newSysroot(t, Options{Bin: bin})
	withGrubEnv(t, s)
	_, d1 := switched(t, s, "1.0")
	c2 := commitTree(t, s, "2.0", true)
	adminCalls(t, calls)

	var names []string
	d2, err := s.DeploySwitch(ctx, stagingRepo(t, s), c2, sysroot.Origin{Ref: "mxos/test", Version: "2.0"}, func(name string) error {
		names = append(names, name)
		if cur := mustCurrent(t, s); cur.Name != d1.Name {
			t.Errorf("recorded(%s) called after the default moved to %s", name, cur.Name)
		}
		if p, _ := s.PendingBoot(); p != name {
			t.Errorf("recorded(%s) called before the pending boot was recorded (%q)", name, p)
		}
		if counter, success := grubVars(t, s); counter != "3" || success != "0" {
			t.Errorf("recorded(%s) called before the boot counter was armed: boot_counter=%q boot_success=%q", name, counter, success)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := adminCalls(t, calls); !equal(got, []string{"deploy"}) {
		t.Errorf("ostree admin calls: %v, want one deploy", got)
	}
	if len(names) != 1 || names[0] != d2.Name {
		t.Errorf("recorded with %v, want [%s]", names, d2.Name)
	}
	if got := order(t, s); !equal(got, []string{d2.Name, d1.Name}) {
		t.Fatalf("order after DeploySwitch: %v", got)
	}
	cur, prev := mustCurrent(t, s), mustPrevious(t, s)
	if cur.Commit != c2 || cur.Origin.Version != "2.0" || cur.Origin.Ref != "mxos/test" || prev.Name != d1.Name {
		t.Fatalf("current %+v previous %+v", cur, prev)
	}
	if b, err := os.ReadFile(filepath.Join(d2.Path, "usr/bin/hello")); err != nil || !strings.Contains(string(b), "2.0") {
		t.Fatalf("v2 deployment content: %q %v", b, err)
	}
	if p, _ := s.PendingBoot(); p != d2.Name {
		t.Fatalf("pending boot %q, want %s", p, d2.Name)
	}
	// The trial ends as after Switch: a failed one rolls back to v1.
	if err := s.Rollback(ctx, "health check failed"); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after rollback: %v", got)
	}

	// A bad commit is refused before anything runs, and so is a failed
	// recorded: the default stays, and the pending boot it left names no
	// deployment, which the next boot clears.
	adminCalls(t, calls)
	if _, err := s.DeploySwitch(ctx, stagingRepo(t, s), c2, sysroot.Origin{}, func(string) error { return nil }); !isErr(err, sysroot.ErrBadCommit) {
		t.Fatalf("DeploySwitch of a bad commit: %v", err)
	}
	c3 := commitTree(t, s, "3.0", true)
	boom := errors.New("disk full")
	if _, err := s.DeploySwitch(ctx, stagingRepo(t, s), c3, sysroot.Origin{}, func(string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("DeploySwitch with recorded failing: %v", err)
	}
	if got := adminCalls(t, calls); len(got) != 0 {
		t.Errorf("ostree admin ran %v for refused DeploySwitch calls", got)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after the refused calls: %v", got)
	}
	if _, err := s.BootAttempt(); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PendingBoot(); p != "" {
		t.Fatalf("pending boot %q left after a boot", p)
	}
}

// On an empty stateroot the first deployment is the default at once, with
// no trial (as Deploy then Switch's no-op).
func TestDeploySwitchFirstDeployment(t *testing.T) {
	s := newSysroot(t, Options{})
	c := commitTree(t, s, "1.0", true)
	var names []string
	d, err := s.DeploySwitch(context.Background(), stagingRepo(t, s), c, sysroot.Origin{Version: "1.0"}, func(name string) error {
		names = append(names, name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d.Name}) || len(names) != 1 || names[0] != d.Name {
		t.Fatalf("order %v, recorded %v, deployment %s", got, names, d.Name)
	}
	if p, _ := s.PendingBoot(); p != "" {
		t.Fatalf("pending boot %q on a first deployment", p)
	}
}
