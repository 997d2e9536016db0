package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// enrollEnv is a server with an enroll token written where a school
// image keeps it.
func enrollEnv(t *testing.T) (*testserver.Server, *fixture, string, string) {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Metadata: true, OnlineSummaryKey: true, Serve: true,
		Roles: []auth.Role{auth.RoleRelease, auth.RoleEnroll, auth.RoleAdmin}})
	f := newFixture(t, ts)
	tokFile := filepath.Join(t.TempDir(), "enroll-token")
	if err := os.WriteFile(tokFile, []byte(ts.Tokens[auth.RoleEnroll]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return ts, f, tokFile, rootJSON(t, ts)
}

func readCredential(t *testing.T, p string) credentialFile {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", p, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(p)
	var c credentialFile
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// A machine enrolls once with the image's enroll token, keeps its own
// credential 0600 in credential_file, uses it from then on (a second
// enrollment would be refused), and renews it once it is old.
func TestAgentEnrollsOnceAndRotates(t *testing.T) {
	ctx := context.Background()
	ts, f, enrollFile, root := enrollEnv(t)
	credFile := filepath.Join(t.TempDir(), "var", "credential")
	extra := "enroll_token_file: " + enrollFile + "\ncredential_file: " + credFile + "\n"
	a, out := newTestAgent(t, ts.URL, "", ts.Release.Dir, root, ts.Release.Verifiers, "aula1-pc01", extra)
	f.publish(t, "10.0.0")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("first upgrade: %v %v\n%s", changed, err, out)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	c := readCredential(t, credFile)
	if c.DeviceID != "aula1-pc01" || c.Token == "" || c.Token == ts.Tokens[auth.RoleEnroll] || time.Until(c.ExpiresAt) < 170*24*time.Hour {
		t.Fatalf("credential %+v", c)
	}
	// The next run (a new process) uses the saved credential: enrolling
	// again would be refused.
	fresh := func() *Agent {
		cl, err := client.New(ts.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		return &Agent{Cfg: a.Cfg, Client: cl, Puller: a.Puller, Sys: a.Sys, Repo: a.Repo, Out: out}
	}
	b := fresh()
	if resp, err := b.Check(ctx); err != nil || resp.Update {
		t.Fatalf("check with the saved credential: %+v %v\n%s", resp, err, out)
	}
	if _, err := ts.Client(t, auth.RoleEnroll).Enroll(ctx, "aula1-pc01"); err == nil {
		t.Fatal("a second enrollment of the same id was accepted")
	}
	// Reports carried increasing sequence numbers.
	reps, err := ts.Store.DeviceReports(ctx, "aula1-pc01", 0)
	if err != nil || len(reps) < 4 {
		t.Fatalf("reports %+v, %v", reps, err)
	}
	for i := 1; i < len(reps); i++ {
		if reps[i].Seq <= 0 || reps[i].Seq >= reps[i-1].Seq {
			t.Fatalf("sequence numbers not increasing: %d then %d", reps[i].Seq, reps[i-1].Seq)
		}
	}
	// Sixty days later the agent renews its credential before checking.
	later := time.Now().Add(61 * 24 * time.Hour)
	b = fresh()
	b.Now = func() time.Time { return later }
	if _, err := b.Check(ctx); err != nil {
		t.Fatalf("check with rotation due: %v\n%s", err, out)
	}
	n := readCredential(t, credFile)
	if n.Token == c.Token || n.DeviceID != c.DeviceID || !n.IssuedAt.Equal(later) {
		t.Fatalf("credential not rotated: %+v", n)
	}
	ids, err := ts.Store.ListDeviceIdentities(ctx)
	if err != nil || len(ids) != 1 || ids[0].State != db.IdentityEnrolled || ids[0].Credentials != 2 {
		t.Fatalf("identities %+v, %v", ids, err)
	}
	// A credential copied from another machine is not used: this one
	// enrolls as itself.
	other, out2 := newTestAgent(t, ts.URL, "", ts.Release.Dir, root, ts.Release.Verifiers, "aula1-pc02", extra)
	if _, err := other.Check(ctx); err != nil {
		t.Fatalf("second machine: %v\n%s", err, out2)
	}
	if c2 := readCredential(t, credFile); c2.DeviceID != "aula1-pc02" {
		t.Fatalf("second machine's credential %+v", c2)
	}
}

// Issue 9, failure 4: a refused offer and a failed download are reported
// as refused and download-failed, which never count toward auto-halt; a
// failed health check is health-failed, which does.
func TestAgentReportClasses(t *testing.T) {
	ctx := context.Background()
	ts, f, enrollFile, root := enrollEnv(t)
	extra := "enroll_token_file: " + enrollFile + "\ncredential_file: " + filepath.Join(t.TempDir(), "credential") + "\n"
	a, out := newTestAgent(t, ts.URL, "", ts.Release.Dir, root, ts.Release.Verifiers, "aula2-pc01", extra)
	f.publish(t, "10.0.0")
	installByHand(t, a, stableRef, "10.0.0")
	f.publish(t, "10.0.1")
	latest := func() api.Event {
		t.Helper()
		reps, err := ts.Store.DeviceReports(ctx, "aula2-pc01", 1)
		if err != nil || len(reps) != 1 {
			t.Fatalf("reports %+v, %v", reps, err)
		}
		return reps[0].Event
	}
	// A pin to a channel this machine may not follow: refused.
	adm := ts.Client(t, auth.RoleAdmin)
	// (The fixture publishes to testing and promotes, so testing has 10.0.1.)
	if _, err := adm.SetPin(ctx, api.Pin{Scope: "device", Target: "aula2-pc01", Channel: "testing", Version: "10.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Upgrade(ctx); err == nil || latest() != api.EventRefused {
		t.Fatalf("pinned to a channel not allowed: %v, reported %s\n%s", err, latest(), out)
	}
	if err := adm.DeletePin(ctx, "device", "aula2-pc01"); err != nil {
		t.Fatal(err)
	}
	// The school's network is down: download-failed.
	urls := a.Puller.URLs
	a.Puller.URLs = []string{"http://127.0.0.1:1/repo"}
	if _, err := a.Upgrade(ctx); err == nil || latest() != api.EventDownloadFailed {
		t.Fatalf("unreachable mirror: %v, reported %s\n%s", err, latest(), out)
	}
	stats, err := ts.Store.RolloutStats(ctx, f.rollout, time.Now().Add(-time.Hour))
	if err != nil || stats.Failures != 0 {
		t.Fatalf("refusal and download error counted: %+v %v", stats, err)
	}
	// The release itself fails its health check: health-failed, counted.
	a.Puller.URLs = urls
	writeCheck(t, a.Cfg.HealthDir, 1)
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade: %v %v\n%s", changed, err, out)
	}
	if err := a.Boot(ctx); err != nil || latest() != api.EventHealthFailed {
		t.Fatalf("boot: %v, reported %s\n%s", err, latest(), out)
	}
	if stats, err := ts.Store.RolloutStats(ctx, f.rollout, time.Now().Add(-time.Hour)); err != nil || stats.Failures != 1 {
		t.Fatalf("health failure not counted: %+v %v", stats, err)
	}
}

func TestFailureClass(t *testing.T) {
	cases := []struct {
		err  error
		want api.Event
	}{
		{refusef("channel %s is not allowed", "x"), api.EventRefused},
		{fmt.Errorf("download: %w", pull.ErrBadSignature), api.EventRefused},
		{fmt.Errorf("installing: %w", sysroot.ErrBadTree), api.EventRefused},
		{fmt.Errorf("check: %w", &api.Error{Code: api.CodeUnknownChannel}), api.EventConfigError},
		{fmt.Errorf("%w: bad", ErrInvalid), api.EventConfigError},
		{fmt.Errorf("download: %w", pull.ErrTimeout), api.EventDownloadFailed},
		{errors.New("no space left on device"), api.EventDownloadFailed},
	}
	for _, c := range cases {
		if got := failureClass(c.err); got != c.want || got.ReleaseFailure() {
			t.Errorf("failureClass(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
