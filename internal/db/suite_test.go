package db

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/event"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// runStoreSuite runs every store test on one engine. newDSN returns the
// DSN of a fresh, empty database for each call.
func runStoreSuite(t *testing.T, newDSN func(t *testing.T) string) {
	open := func(t *testing.T) *Store {
		t.Helper()
		return openDSN(t, newDSN(t))
	}
	t.Run("migrations", func(t *testing.T) { testMigrations(t, newDSN(t)) })
	t.Run("migration-3-keeps-data", func(t *testing.T) { testMigration3(t, newDSN(t)) })
	t.Run("releases", func(t *testing.T) { testReleases(t, open(t)) })
	t.Run("releases-concurrent", func(t *testing.T) { testReleasesConcurrent(t, open(t)) })
	t.Run("rollouts", func(t *testing.T) { testRollouts(t, open(t)) })
	t.Run("rollout-cas-concurrent", func(t *testing.T) { testRolloutCASConcurrent(t, open(t)) })
	t.Run("devices", func(t *testing.T) { testDevices(t, open(t)) })
	t.Run("fleet", func(t *testing.T) { testFleet(t, open(t)) })
	t.Run("pins", func(t *testing.T) { testPins(t, open(t)) })
	t.Run("reports", func(t *testing.T) { testReports(t, open(t)) })
	t.Run("tokens", func(t *testing.T) { testTokens(t, open(t)) })
	t.Run("report-seq", func(t *testing.T) { testReportSeq(t, open(t)) })
	t.Run("report-timeline", func(t *testing.T) { testReportTimeline(t, open(t)) })
	t.Run("release-image", func(t *testing.T) { testReleaseImage(t, open(t)) })
	t.Run("device-status", func(t *testing.T) { testDeviceStatuses(t, open(t)) })
	t.Run("manual-rollback", func(t *testing.T) { testManualRollback(t, open(t)) })
	t.Run("identities", func(t *testing.T) { testIdentities(t, open(t)) })
	t.Run("credential-feed", func(t *testing.T) { testCredentialFeed(t, open(t)) })
	t.Run("cache-change-feed", func(t *testing.T) { testCacheChangeFeed(t, open(t)) })
	t.Run("metrics-queries", func(t *testing.T) { testMetricsQueries(t, open(t)) })
	t.Run("fleet-locks", func(t *testing.T) { testFleetLocks(t, open(t)) })
	t.Run("fleet-locks-concurrent", func(t *testing.T) { testFleetLocksConcurrent(t, open(t)) })
	t.Run("audit-concurrent", func(t *testing.T) { testAuditConcurrent(t, open(t)) })
	t.Run("audit-tamper", func(t *testing.T) { testAuditTamper(t, open) })
	t.Run("audit-input", func(t *testing.T) { testAuditInput(t, open(t)) })
	t.Run("tx", func(t *testing.T) { testTx(t, open(t)) })
	t.Run("cluster-lock", func(t *testing.T) { testClusterLock(t, newDSN(t)) })
	t.Run("input", func(t *testing.T) { testInput(t, open(t)) })
}

func openDSN(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// t0 has nanoseconds and a non-UTC zone, so every round trip checks the
// conversion to UTC microseconds.
var t0 = time.Date(2026, 11, 23, 7, 45, 9, 123456789, time.FixedZone("CST", -6*3600))

// at returns t0 plus n minutes.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }

// stored is how the store returns a time.
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Microsecond).UTC()
}

func commit(n int) string { return fmt.Sprintf("%064x", n) }

func release(channel, arch, version string) Release {
	return Release{
		Channel: channel, Arch: arch, Version: version,
		Ref:    "mxos/10/" + arch + "/" + channel,
		Commit: commit(len(version) * 7), PublishedAt: at(1), PublishedBy: "token:ci",
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

// 0003 rebuilds tokens and reports: what was there before stays, in order.
func testMigration3(t *testing.T, dsn string) {
	ctx := context.Background()
	migrateLimit = 2
	old, err := Open(ctx, dsn, "")
	migrateLimit = 0
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO tokens (id, name, role, hash, created_at, created_by, revoked_at) VALUES ('t1', 'ci', 'release', '` + fmt.Sprintf("%064x", 1) + `', 1, 'x', NULL)`,
		`INSERT INTO tokens (id, name, role, hash, created_at, created_by, revoked_at) VALUES ('t2', 'old', 'admin', '` + fmt.Sprintf("%064x", 2) + `', 1, 'x', 5)`,
		`INSERT INTO devices (id, arch, channel, first_seen, last_seen) VALUES ('pc', 'x86_64', 'stable', 1, 1)`,
		`INSERT INTO reports (device_id, rollout_id, version, event, error_text, reported_at) VALUES ('pc', NULL, '10.1', 'failed', 'b', 7)`,
		`INSERT INTO reports (device_id, rollout_id, version, event, error_text, reported_at) VALUES ('pc', NULL, '10.1', 'rolled-back', 'a', 7)`,
	} {
		if _, err := old.db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	old.Close()
	s := openDSN(t, dsn)
	toks, err := s.ListTokens(ctx, true)
	if err != nil || len(toks) != 2 || toks[0].Name != "ci" || !toks[0].ExpiresAt.IsZero() || toks[1].RevokedAt.IsZero() {
		t.Fatalf("tokens after migration: %+v, %v", toks, err)
	}
	if got, err := s.RolledBackFrom(ctx, "pc"); err != nil || !reflect.DeepEqual(got, []string{"10.1"}) {
		t.Fatalf("reports after migration: %v, %v", got, err)
	}
	// Renumbered in the old order; new reports go after them.
	if err := s.AddReport(ctx, Report{DeviceID: "pc", Version: "10.2", Event: event.HealthOK, At: at(1), Seq: 1}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT error_text FROM reports ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var texts []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		texts = append(texts, s)
	}
	if !reflect.DeepEqual(texts, []string{"b", "a", ""}) {
		t.Fatalf("report order after migration: %q", texts)
	}
}

func testMigrations(t *testing.T, dsn string) {
	ctx := context.Background()
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	s := openDSN(t, dsn)
	first, err := s.Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", len(first), len(ms))
	}
	for i, m := range ms {
		if first[i].Version != m.version || first[i].Name != m.name || first[i].Checksum != m.checksum {
			t.Errorf("migration %d recorded as %+v, want %s %s", i, first[i], m.name, m.checksum)
		}
	}
	// Applying again is a no-op: same rows, same times.
	s2 := openDSN(t, dsn)
	second, err := s2.Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("second Open changed schema_migrations:\n%+v\n%+v", first, second)
	}
	if err := s2.migrate(ctx); err != nil {
		t.Fatalf("migrate again: %v", err)
	}

	// An edited migration, or a database newer than the binary, stops Open.
	if _, err := s.db.ExecContext(ctx, `UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn, ""); err == nil || !strings.Contains(err.Error(), "changed after it was applied") {
		t.Fatalf("Open with an edited migration: %v", err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE schema_migrations SET checksum = $1 WHERE version = 1`, ms[0].checksum); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (9999, '9999_future.sql', 'x', 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn, ""); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("Open of a newer database: %v", err)
	}
}

func testReleases(t *testing.T, s *Store) {
	ctx := context.Background()
	withOCI := release("testing", "x86_64", "10.1")
	withOCI.OCIDigest = "sha256:" + commit(9)
	promoted := release("stable", "x86_64", "10.1")
	promoted.PromotedFrom = "testing"
	badCommit := release("testing", "x86_64", "10.9")
	badCommit.Commit = "ABC"
	noTime := release("testing", "x86_64", "10.9")
	noTime.PublishedAt = time.Time{}
	nul := release("testing", "x86_64", "10.9")
	nul.PublishedBy = "a\x00b"

	steps := []struct {
		name string
		r    Release
		want error
	}{
		{"first", release("testing", "x86_64", "10.0"), nil},
		{"rc", release("testing", "x86_64", "10.1-rc.1"), nil},
		{"release-after-rc", withOCI, nil},
		{"duplicate", release("testing", "x86_64", "10.1"), ErrDuplicate},
		{"older", release("testing", "x86_64", "10.0.5"), ErrVersionOrder},
		{"same-version-other-spelling", release("testing", "x86_64", "10.1.0"), ErrVersionOrder},
		{"older-rc", release("testing", "x86_64", "10.1-rc.2"), ErrVersionOrder},
		{"other-arch-independent", release("testing", "aarch64", "10.0.5"), nil},
		{"promotion-other-channel", promoted, nil},
		{"numeric-order", release("testing", "x86_64", "10.10"), nil},
		{"bad-version", release("testing", "x86_64", "v10.11"), ErrInvalid},
		{"bad-commit", badCommit, ErrInvalid},
		{"no-time", noTime, ErrInvalid},
		{"nul-byte", nul, ErrInvalid},
		{"no-channel", release("", "x86_64", "10.11"), ErrInvalid},
	}
	for _, st := range steps {
		wantErr(t, st.name, s.AddRelease(ctx, st.r), st.want)
	}

	got, err := s.GetRelease(ctx, "testing", "x86_64", "10.1")
	if err != nil {
		t.Fatal(err)
	}
	want := withOCI
	want.PublishedAt = stored(want.PublishedAt)
	if got != want {
		t.Errorf("GetRelease = %+v, want %+v", got, want)
	}
	if got, err := s.GetRelease(ctx, "stable", "x86_64", "10.1"); err != nil || got.PromotedFrom != "testing" || got.OCIDigest != "" {
		t.Errorf("promoted release = %+v, %v", got, err)
	}
	_, err = s.GetRelease(ctx, "testing", "x86_64", "9.0")
	wantErr(t, "GetRelease missing", err, ErrNotFound)

	list, err := s.ListReleases(ctx, "testing", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := versions(list), []string{"10.10", "10.1", "10.1-rc.1", "10.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListReleases = %v, want %v", got, want)
	}
	all, err := s.ListReleases(ctx, "testing", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := versions(all), []string{"10.10", "10.1", "10.1-rc.1", "10.0.5", "10.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListReleases(all arches) = %v, want %v", got, want)
	}
	if empty, err := s.ListReleases(ctx, "edu", "x86_64"); err != nil || len(empty) != 0 {
		t.Errorf("ListReleases(edu) = %v, %v", empty, err)
	}

	latest, err := s.LatestRelease(ctx, "testing", "x86_64")
	if err != nil || latest.Version != "10.10" {
		t.Errorf("LatestRelease = %+v, %v", latest, err)
	}
	_, err = s.LatestRelease(ctx, "edu", "x86_64")
	wantErr(t, "LatestRelease empty", err, ErrNotFound)
	_, err = s.LatestRelease(ctx, "testing", "")
	wantErr(t, "LatestRelease no arch", err, ErrInvalid)
}

func versions(rs []Release) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Version)
	}
	return out
}

// Concurrent publishes (each a release and its audit entry in one
// transaction) serialize: each either lands or is refused as out of order,
// and in commit order (the audit sequence) the versions only go up. Without
// the per-channel lock two publishes could both pass the order check
// against the same newest release and commit in the wrong order.
func testReleasesConcurrent(t *testing.T, s *Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Versions arrive out of order across goroutines.
			v := fmt.Sprintf("10.%d", (i*7)%16)
			errs[i] = s.Tx(ctx, func(tx *Tx) error {
				if err := tx.AddRelease(ctx, release("testing", "x86_64", v)); err != nil {
					return err
				}
				_, err := tx.AppendAudit(ctx, Entry{Actor: "token:ci", Action: "publish", Subject: v, At: at(i)})
				return err
			})
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrVersionOrder):
			t.Errorf("publish %d: %v", i, err)
		}
	}
	log, err := s.ListAudit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if ok == 0 || len(log) != ok {
		t.Fatalf("%d publishes succeeded, %d audited", ok, len(log))
	}
	for i := 1; i < len(log); i++ {
		if c, err := rollout.Compare(log[i].Subject, log[i-1].Subject); err != nil || c <= 0 {
			t.Fatalf("published %s after %s", log[i].Subject, log[i-1].Subject)
		}
	}
	if err := s.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
}

func newRollout(id, channel, arch, version string, state rollout.State) Rollout {
	return Rollout{
		ID: id, Channel: channel, Arch: arch, Version: version,
		Ramp: "1%,10%@24h,100%@72h", State: state, CreatedAt: at(10), CreatedBy: "token:release",
	}
}

func testRollouts(t *testing.T, s *Store) {
	ctx := context.Background()
	for _, r := range []Release{
		release("stable", "x86_64", "10.1"), release("stable", "x86_64", "10.2"),
		release("stable", "aarch64", "10.1"), release("edu", "x86_64", "10.1"),
	} {
		if err := s.AddRelease(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	badRamp := newRollout("r-bad", "stable", "x86_64", "10.1", rollout.StatePending)
	badRamp.Ramp = "50%@1h,10%@2h"
	later := newRollout("r3", "edu", "x86_64", "10.1", rollout.StatePending)
	later.CreatedAt = at(20)

	creates := []struct {
		name string
		r    Rollout
		want error
	}{
		{"pending", newRollout("r1", "stable", "x86_64", "10.1", rollout.StatePending), nil},
		{"duplicate-id", newRollout("r1", "edu", "x86_64", "10.1", rollout.StatePending), ErrDuplicate},
		{"second-open-same-channel-arch", newRollout("r2", "stable", "x86_64", "10.2", rollout.StateActive), ErrConflict},
		{"other-arch", newRollout("r-arm", "stable", "aarch64", "10.1", rollout.StateActive), nil},
		{"edu", later, nil},
		{"unknown-release", newRollout("r4", "stable", "x86_64", "11.0", rollout.StatePending), ErrNotFound},
		{"bad-ramp", badRamp, ErrInvalid},
		{"created-halted", newRollout("r5", "stable", "riscv64", "10.1", rollout.StateHalted), ErrInvalid},
		{"bad-state", newRollout("r6", "stable", "riscv64", "10.1", "running"), ErrInvalid},
		{"no-id", newRollout("", "stable", "riscv64", "10.1", rollout.StatePending), ErrInvalid},
	}
	for _, c := range creates {
		wantErr(t, c.name, s.CreateRollout(ctx, c.r), c.want)
	}

	got, err := s.GetRollout(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	want := newRollout("r1", "stable", "x86_64", "10.1", rollout.StatePending)
	want.CreatedAt, want.UpdatedAt = stored(at(10)), stored(at(10))
	if got != want {
		t.Errorf("GetRollout = %+v\nwant %+v", got, want)
	}
	if arm, err := s.GetRollout(ctx, "r-arm"); err != nil || !arm.StartedAt.Equal(stored(at(10))) {
		t.Errorf("active rollout without StartedAt: %+v, %v", arm, err)
	}
	_, err = s.GetRollout(ctx, "nope")
	wantErr(t, "GetRollout missing", err, ErrNotFound)

	// Moves, in order, on r1 (and r2 once r1 is halted).
	moves := []struct {
		name     string
		id       string
		from, to rollout.State
		when     int
		want     error
	}{
		{"illegal-pending-to-complete", "r1", rollout.StatePending, rollout.StateComplete, 11, ErrInvalid},
		{"unknown-state", "r1", rollout.StatePending, "running", 11, ErrInvalid},
		{"unknown-id", "nope", rollout.StatePending, rollout.StateActive, 11, ErrNotFound},
		{"stale-from", "r1", rollout.StateActive, rollout.StatePaused, 11, ErrConflict},
		{"start", "r1", rollout.StatePending, rollout.StateActive, 100, nil},
		{"start-again", "r1", rollout.StatePending, rollout.StateActive, 101, ErrConflict},
		{"pause", "r1", rollout.StateActive, rollout.StatePaused, 160, nil},
		{"resume", "r1", rollout.StatePaused, rollout.StateActive, 220, nil},
		{"halt", "r1", rollout.StateActive, rollout.StateHalted, 230, nil},
	}
	for _, m := range moves {
		reason := ""
		if m.to == rollout.StateHalted {
			reason = "failure rate 12% is above the 5% threshold"
		}
		wantErr(t, m.name, s.SetRolloutState(ctx, m.id, m.from, m.to, reason, at(m.when)), m.want)
		switch m.name {
		case "illegal-pending-to-complete":
			err := s.SetRolloutState(ctx, m.id, m.from, m.to, "", at(m.when))
			if !errors.Is(err, rollout.ErrIllegalTransition) {
				t.Errorf("illegal move error %v does not wrap rollout.ErrIllegalTransition", err)
			}
		case "start":
			r, _ := s.GetRollout(ctx, "r1")
			if !r.StartedAt.Equal(stored(at(100))) || !r.UpdatedAt.Equal(stored(at(100))) || !r.StoppedAt.IsZero() {
				t.Errorf("after start: %+v", r)
			}
		case "pause":
			r, _ := s.GetRollout(ctx, "r1")
			if r.State != rollout.StatePaused || !r.StoppedAt.Equal(stored(at(160))) || !r.StartedAt.Equal(stored(at(100))) {
				t.Errorf("after pause: %+v", r)
			}
		case "resume":
			// Paused for 60 minutes: the ramp's origin moves by 60 minutes.
			r, _ := s.GetRollout(ctx, "r1")
			if r.State != rollout.StateActive || !r.StartedAt.Equal(stored(at(160))) || !r.StoppedAt.IsZero() {
				t.Errorf("after resume: %+v", r)
			}
		case "halt":
			r, _ := s.GetRollout(ctx, "r1")
			if r.HaltReason != reason || !r.StoppedAt.Equal(stored(at(230))) || !r.UpdatedAt.Equal(stored(at(230))) {
				t.Errorf("after halt: %+v", r)
			}
		}
	}

	// A halted rollout no longer blocks a new one; resuming the halted one
	// while the new one is open conflicts.
	r2 := newRollout("r2", "stable", "x86_64", "10.2", rollout.StateActive)
	r2.CreatedAt = at(240)
	wantErr(t, "create after halt", s.CreateRollout(ctx, r2), nil)
	wantErr(t, "resume halted over open", s.SetRolloutState(ctx, "r1", rollout.StateHalted, rollout.StateActive, "", at(250)), ErrConflict)
	if r, _ := s.GetRollout(ctx, "r1"); r.State != rollout.StateHalted {
		t.Errorf("failed resume changed r1: %+v", r)
	}
	wantErr(t, "complete r2", s.SetRolloutState(ctx, "r2", rollout.StateActive, rollout.StateComplete, "", at(260)), nil)
	wantErr(t, "resume halted", s.SetRolloutState(ctx, "r1", rollout.StateHalted, rollout.StateActive, "", at(290)), nil)
	if r, _ := s.GetRollout(ctx, "r1"); r.HaltReason != "" || !r.StartedAt.Equal(stored(at(160+60))) {
		t.Errorf("after resuming halted: %+v", r)
	}

	cur, err := s.CurrentRollout(ctx, "stable", "x86_64")
	if err != nil || cur.ID != "r2" {
		t.Errorf("CurrentRollout = %+v, %v; want r2", cur, err)
	}
	_, err = s.CurrentRollout(ctx, "stable", "riscv64")
	wantErr(t, "CurrentRollout none", err, ErrNotFound)

	list, err := s.ListRollouts(ctx, "stable")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rolloutIDs(list), []string{"r2", "r1", "r-arm"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListRollouts(stable) = %v, want %v", got, want)
	}
	all, err := s.ListRollouts(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rolloutIDs(all), []string{"r2", "r3", "r1", "r-arm"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListRollouts(all) = %v, want %v", got, want)
	}
}

func rolloutIDs(rs []Rollout) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// Of several concurrent pauses of one active rollout exactly one wins.
func testRolloutCASConcurrent(t *testing.T, s *Store) {
	ctx := context.Background()
	if err := s.AddRelease(ctx, release("stable", "x86_64", "10.1")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRollout(ctx, newRollout("r1", "stable", "x86_64", "10.1", rollout.StateActive)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.SetRolloutState(ctx, "r1", rollout.StateActive, rollout.StatePaused, "", at(20+i))
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, ErrConflict):
			t.Errorf("concurrent pause: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent pauses won, want 1", wins)
	}
}

func device(id, channel, group string, seen int) Device {
	return Device{ID: id, Arch: "x86_64", Channel: channel, Group: group,
		BootedCommit: commit(seen), Version: "10.1", LastSeen: at(seen)}
}

func testDevices(t *testing.T, s *Store) {
	ctx := context.Background()
	wantErr(t, "create", s.UpsertDevice(ctx, device("d1", "stable", "lab-1", 1)), nil)
	upd := device("d1", "edu", "", 5)
	upd.Version = "10.2"
	wantErr(t, "update without group", s.UpsertDevice(ctx, upd), nil)
	got, err := s.GetDevice(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	want := Device{ID: "d1", Arch: "x86_64", Channel: "edu", Group: "lab-1", BootedCommit: commit(5),
		Version: "10.2", FirstSeen: stored(at(1)), LastSeen: stored(at(5))}
	if got != want {
		t.Errorf("GetDevice = %+v\nwant %+v", got, want)
	}
	wantErr(t, "update with group", s.UpsertDevice(ctx, device("d1", "edu", "lab-2", 6)), nil)
	if got, _ := s.GetDevice(ctx, "d1"); got.Group != "lab-2" {
		t.Errorf("group after check-in naming one = %q", got.Group)
	}
	wantErr(t, "set group", s.SetDeviceGroup(ctx, "d1", ""), nil)
	if got, _ := s.GetDevice(ctx, "d1"); got.Group != "" {
		t.Errorf("group after clearing = %q", got.Group)
	}
	wantErr(t, "set group unknown", s.SetDeviceGroup(ctx, "nope", "x"), ErrNotFound)
	_, err = s.GetDevice(ctx, "nope")
	wantErr(t, "get unknown", err, ErrNotFound)
	wantErr(t, "no id", s.UpsertDevice(ctx, device("", "edu", "", 1)), ErrInvalid)
	wantErr(t, "no time", s.UpsertDevice(ctx, Device{ID: "x", Arch: "x86_64", Channel: "edu"}), ErrInvalid)

	// 25 devices for paging: d00..d24, every third in lab-a, stable/edu alternating.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM devices`); err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		ch, grp := "stable", ""
		if i%2 == 1 {
			ch = "edu"
		}
		if i%3 == 0 {
			grp = "lab-a"
		}
		if err := s.UpsertDevice(ctx, device(fmt.Sprintf("d%02d", i), ch, grp, i)); err != nil {
			t.Fatal(err)
		}
	}
	pageTests := []struct {
		name  string
		f     DeviceFilter
		pages []int
		count int
	}{
		{"all-by-10", DeviceFilter{Limit: 10}, []int{10, 10, 5}, 25},
		{"default-limit", DeviceFilter{}, []int{25}, 25},
		{"stable-by-5", DeviceFilter{Channel: "stable", Limit: 5}, []int{5, 5, 3}, 13},
		{"group", DeviceFilter{Group: "lab-a", Limit: 4}, []int{4, 4, 1}, 9},
		{"edu-in-group", DeviceFilter{Channel: "edu", Group: "lab-a"}, []int{4}, 4},
		{"arch-none", DeviceFilter{Arch: "aarch64"}, []int{0}, 0},
	}
	for _, pt := range pageTests {
		t.Run(pt.name, func(t *testing.T) {
			f := pt.f
			var sizes []int
			seen := map[string]bool{}
			last := ""
			for {
				page, err := s.ListDevices(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, len(page))
				for _, d := range page {
					if d.ID <= last || seen[d.ID] {
						t.Fatalf("device %s out of order after %s", d.ID, last)
					}
					if (f.Channel != "" && d.Channel != f.Channel) || (f.Group != "" && d.Group != f.Group) {
						t.Fatalf("device %+v does not match filter %+v", d, f)
					}
					seen[d.ID], last = true, d.ID
				}
				if len(page) < pageLimit(f.Limit) {
					break
				}
				f.After = last
			}
			if !reflect.DeepEqual(sizes, pt.pages) {
				t.Errorf("page sizes %v, want %v", sizes, pt.pages)
			}
			n, err := s.CountDevices(ctx, pt.f)
			if err != nil || n != pt.count {
				t.Errorf("CountDevices = %d, %v; want %d", n, err, pt.count)
			}
		})
	}
	groups, err := s.ListGroups(ctx)
	if err != nil || !reflect.DeepEqual(groups, []Group{{"lab-a", 9}}) {
		t.Errorf("ListGroups = %v, %v", groups, err)
	}
}

func testPins(t *testing.T, s *Store) {
	ctx := context.Background()
	pin := func(scope PinScope, target, channel, version string) Pin {
		return Pin{Scope: scope, Target: target, Channel: channel, Version: version, CreatedBy: "admin:ana", CreatedAt: at(3)}
	}
	sets := []struct {
		name string
		p    Pin
		want error
	}{
		{"device-channel", pin(PinDevice, "d1", "edu", ""), nil},
		{"group-hold", pin(PinGroup, "lab-1", "", "10.1"), nil},
		{"group-both", pin(PinGroup, "lab-2", "stable", "10.2"), nil},
		{"replace", pin(PinDevice, "d1", "stable", "10.1"), nil},
		{"bad-scope", pin("fleet", "x", "edu", ""), ErrInvalid},
		{"nothing-set", pin(PinDevice, "d2", "", ""), ErrInvalid},
		{"bad-version", pin(PinDevice, "d2", "", "latest"), ErrInvalid},
		{"no-target", pin(PinGroup, "", "edu", ""), ErrInvalid},
		{"no-time", Pin{Scope: PinDevice, Target: "d2", Channel: "edu", CreatedBy: "a"}, ErrInvalid},
	}
	for _, st := range sets {
		wantErr(t, st.name, s.SetPin(ctx, st.p), st.want)
	}
	dev := pin(PinDevice, "d1", "stable", "10.1")
	dev.CreatedAt = stored(dev.CreatedAt)
	grp := pin(PinGroup, "lab-1", "", "10.1")
	grp.CreatedAt = stored(grp.CreatedAt)
	lookups := []struct {
		name            string
		device, group   string
		wantDev, wantGr *Pin
	}{
		{"both", "d1", "lab-1", &dev, &grp},
		{"device-only", "d1", "lab-9", &dev, nil},
		{"group-only", "d9", "lab-1", nil, &grp},
		{"no-group", "d1", "", &dev, nil},
		{"none", "d9", "", nil, nil},
	}
	for _, l := range lookups {
		d, g, err := s.PinsFor(ctx, l.device, l.group)
		if err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		if !reflect.DeepEqual(d, l.wantDev) || !reflect.DeepEqual(g, l.wantGr) {
			t.Errorf("%s: PinsFor = %+v, %+v; want %+v, %+v", l.name, d, g, l.wantDev, l.wantGr)
		}
	}
	list, err := s.ListPins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range list {
		keys = append(keys, string(p.Scope)+":"+p.Target)
	}
	if want := []string{"group:lab-1", "group:lab-2", "device:d1"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("ListPins = %v, want %v", keys, want)
	}
	wantErr(t, "delete", s.DeletePin(ctx, PinDevice, "d1"), nil)
	wantErr(t, "delete again", s.DeletePin(ctx, PinDevice, "d1"), ErrNotFound)
	wantErr(t, "delete wrong scope", s.DeletePin(ctx, PinDevice, "lab-1"), ErrNotFound)
	if d, _, _ := s.PinsFor(ctx, "d1", ""); d != nil {
		t.Errorf("deleted pin still found: %+v", d)
	}
}

func testReports(t *testing.T, s *Store) {
	ctx := context.Background()
	if err := s.AddRelease(ctx, release("stable", "x86_64", "10.2")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRollout(ctx, newRollout("r1", "stable", "x86_64", "10.2", rollout.StateActive)); err != nil {
		t.Fatal(err)
	}
	rep := func(dev string, ev event.Event, when int) Report {
		return Report{DeviceID: dev, RolloutID: "r1", Version: "10.2", Event: ev, At: at(when)}
	}
	other := rep("g", event.HealthOK, 150)
	other.Version = "10.1" // healthy again on the old release after rolling back
	otherRollout := rep("h", event.HealthOK, 150)
	otherRollout.RolloutID = "r0"
	noRollout := rep("k", event.Failed, 150)
	noRollout.RolloutID = ""
	reports := []Report{
		rep("a", event.DownloadStarted, 100), rep("a", event.Deployed, 110), rep("a", event.HealthOK, 120),
		rep("b", event.HealthFailed, 110), rep("b", event.BootFailed, 130), // counts once
		rep("c", event.RolledBack, 50),                                   // before every window below
		rep("d", event.HealthFailed, 110), rep("d", event.HealthOK, 140), // recovered: success
		rep("e", event.HealthOK, 110), rep("e", event.RolledBack, 140), // then rolled back: failure
		rep("f", event.DownloadStarted, 110), // no outcome yet
		rep("g", event.RolledBack, 90), other,
		otherRollout, noRollout,
		rep("i", event.HealthFailed, 200), rep("i", event.HealthOK, 200), // same time: the later report wins
		rep("j", event.HealthOK, 100), // exactly at the window's start
		// Refusals, download and configuration errors and the older
		// agents' failed are no outcome: they never count (issue 9, 4).
		rep("n", event.Refused, 120), rep("o", event.DownloadFailed, 120),
		rep("p", event.ConfigError, 120), rep("q", event.Failed, 120),
		rep("r", event.HealthOK, 100), rep("r", event.Refused, 130), // still a success
	}
	for i, r := range reports {
		if err := s.AddReport(ctx, r); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
	windows := []struct {
		name  string
		since int
		want  rollout.Stats
	}{
		{"all", 0, rollout.Stats{Successes: 5, Failures: 4}},        // a d i j r ok; b c e g failed
		{"from-100", 100, rollout.Stats{Successes: 5, Failures: 2}}, // c, g before the window
		{"from-125", 125, rollout.Stats{Successes: 2, Failures: 2}}, // d i ok; b e failed
		{"from-135", 135, rollout.Stats{Successes: 2, Failures: 1}},
		{"after-all", 300, rollout.Stats{}},
	}
	for _, w := range windows {
		got, err := s.RolloutStats(ctx, "r1", at(w.since))
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if got != w.want {
			t.Errorf("%s: RolloutStats = %+v, want %+v", w.name, got, w.want)
		}
	}
	_, err := s.RolloutStats(ctx, "nope", at(0))
	wantErr(t, "stats of unknown rollout", err, ErrNotFound)

	bad := []struct {
		name string
		r    Report
	}{
		{"unknown-event", Report{DeviceID: "a", Version: "10.2", Event: "exploded", At: at(1)}},
		{"no-device", Report{Version: "10.2", Event: event.Failed, At: at(1)}},
		{"no-version", Report{DeviceID: "a", Event: event.Failed, At: at(1)}},
		{"no-time", Report{DeviceID: "a", Version: "10.2", Event: event.Failed}},
		{"bad-utf8", Report{DeviceID: "a", Version: "10.2", Event: event.Failed, At: at(1), Error: "\xff"}},
	}
	for _, b := range bad {
		wantErr(t, b.name, s.AddReport(ctx, b.r), ErrInvalid)
	}

	for i, v := range []string{"10.10", "10.2", "garbage", "10.2", "10.9"} {
		r := rep("m", event.ReleaseFailures[i%len(event.ReleaseFailures)], 10)
		r.Version = v
		if err := s.AddReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range []event.Event{event.Failed, event.Refused, event.DownloadFailed} {
		r := rep("m", ev, 11)
		r.Version = "10.11" // refused, never rolled back from
		if err := s.AddReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.RolledBackFrom(ctx, "m")
	if want := []string{"10.2", "10.9", "10.10", "garbage"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("RolledBackFrom = %v, %v; want %v", got, err, want)
	}
	if got, err := s.RolledBackFrom(ctx, "nobody"); err != nil || len(got) != 0 {
		t.Errorf("RolledBackFrom(nobody) = %v, %v", got, err)
	}
	// b c d e g i had release failures earlier in this test; refusals and
	// download errors (k n o p q) do not count.
	if got, err := s.DevicesWithRollbacks(ctx); err != nil || !reflect.DeepEqual(got, []string{"b", "c", "d", "e", "g", "i", "m"}) {
		t.Errorf("DevicesWithRollbacks = %v, %v; want [b c d e g i m]", got, err)
	}
}

// Report sequence numbers: each must be above the device's last, so a
// replay is refused, also when two reports race.
func testReportSeq(t *testing.T, s *Store) {
	ctx := context.Background()
	if err := s.UpsertDevice(ctx, device("pc1", "stable", "", 1)); err != nil {
		t.Fatal(err)
	}
	rep := func(dev string, seq int64) Report {
		return Report{DeviceID: dev, Version: "10.2", Event: event.HealthOK, At: at(2), Seq: seq}
	}
	wantErr(t, "first", s.AddReport(ctx, rep("pc1", 5)), nil)
	wantErr(t, "replay", s.AddReport(ctx, rep("pc1", 5)), ErrReplay)
	wantErr(t, "older", s.AddReport(ctx, rep("pc1", 4)), ErrReplay)
	wantErr(t, "next", s.AddReport(ctx, rep("pc1", 6)), nil)
	wantErr(t, "unknown device", s.AddReport(ctx, rep("ghost", 1)), ErrNotFound)
	wantErr(t, "negative", s.AddReport(ctx, rep("pc1", -1)), ErrInvalid)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.AddReport(ctx, rep("pc1", 100)) }()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, ErrReplay) {
			t.Errorf("concurrent report: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 8 concurrent reports with one sequence number accepted, want 1", ok)
	}
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM reports WHERE device_id = 'pc1'`).Scan(&n); err != nil || n != 3 {
		t.Errorf("stored %d reports (%v), want 3", n, err)
	}
	if reps, err := s.DeviceReports(ctx, "pc1", 2); err != nil || len(reps) != 2 || reps[0].Seq != 100 || reps[1].Seq != 6 || reps[0].Event != event.HealthOK {
		t.Errorf("DeviceReports = %+v, %v", reps, err)
	}
}

// Device identities: enroll once, authorize, revoke, rotate, bind.
func testIdentities(t *testing.T, s *Store) {
	ctx := context.Background()
	cred := func(dev, secret string, created int) Token {
		return Token{ID: "id-" + secret, Name: DeviceCredentialPrefix + dev + "/" + secret, Role: auth.RoleDevice,
			Hash: tokenHash(secret), CreatedAt: at(created), CreatedBy: "token:escuela", DeviceID: dev, ExpiresAt: at(created + 1000)}
	}
	wantErr(t, "enroll", s.EnrollDevice(ctx, cred("pc1", "c1", 1), "token:escuela"), nil)
	wantErr(t, "enroll twice", s.EnrollDevice(ctx, cred("pc1", "c2", 2), "token:escuela"), ErrConflict)
	// A machine already known (it checked in) or with a bound token cannot
	// be taken over by enrolling its id.
	if err := s.UpsertDevice(ctx, device("known", "stable", "", 1)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "enroll a known id", s.EnrollDevice(ctx, cred("known", "c3", 2), "token:escuela"), ErrConflict)
	shared := Token{ID: "shared", Name: "aulas", Role: auth.RoleDevice, Hash: tokenHash("shared"), CreatedAt: at(1), CreatedBy: "admin"}
	wantErr(t, "shared token", s.CreateToken(ctx, shared), nil)
	if got, err := s.BindTokenDevice(ctx, "shared", "kiosk", at(2)); err != nil || got != "kiosk" {
		t.Fatalf("first bind = %q, %v", got, err)
	}
	if got, err := s.BindTokenDevice(ctx, "shared", "other", at(2)); err != nil || got != "kiosk" {
		t.Fatalf("second bind = %q, %v; want the first id", got, err)
	}
	_, err := s.BindTokenDevice(ctx, "id-c1-none", "x", at(2))
	wantErr(t, "bind an unknown token", err, ErrNotFound)
	wantErr(t, "enroll a bound id", s.EnrollDevice(ctx, cred("kiosk", "c4", 2), "token:escuela"), ErrConflict)
	// An admin lets the known machine enroll.
	if _, err := s.AuthorizeDevice(ctx, "known", "token:admin", at(3)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "enroll authorized", s.EnrollDevice(ctx, cred("known", "c5", 4), "token:escuela"), nil)
	// Rotation: a new credential, the old one lives only the grace period.
	old, err := s.TokenByHash(ctx, tokenHash("c1"))
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "rotate", s.RotateDeviceCredential(ctx, old, cred("pc1", "c6", 10), time.Hour), nil)
	old, _ = s.TokenByHash(ctx, tokenHash("c1"))
	if !old.ExpiresAt.Equal(stored(at(70))) {
		t.Errorf("old credential expires %v, want %v", old.ExpiresAt, stored(at(70)))
	}
	// Revocation kills every credential and keeps the id out.
	n, err := s.RevokeDevice(ctx, "pc1", "token:admin", at(20))
	if err != nil || n != 2 {
		t.Fatalf("RevokeDevice = %d, %v; want 2 credentials", n, err)
	}
	for _, sec := range []string{"c1", "c6"} {
		_, err := s.TokenByHash(ctx, tokenHash(sec))
		wantErr(t, "revoked credential "+sec, err, ErrNotFound)
	}
	wantErr(t, "enroll revoked", s.EnrollDevice(ctx, cred("pc1", "c7", 21), "token:escuela"), ErrConflict)
	wantErr(t, "rotate revoked", s.RotateDeviceCredential(ctx, old, cred("pc1", "c8", 21), time.Hour), ErrConflict)
	shared2 := Token{ID: "shared2", Name: "aulas-2", Role: auth.RoleDevice, Hash: tokenHash("shared2"), CreatedAt: at(1), CreatedBy: "admin"}
	wantErr(t, "shared token 2", s.CreateToken(ctx, shared2), nil)
	_, err = s.BindTokenDevice(ctx, "shared2", "pc1", at(22))
	wantErr(t, "bind to a revoked id", err, ErrConflict)

	ids, err := s.ListDeviceIdentities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, d := range ids {
		summary = append(summary, fmt.Sprintf("%s/%s/%d", d.DeviceID, d.State, d.Credentials))
	}
	if want := []string{"kiosk//1", "known/enrolled/1", "pc1/revoked/0"}; !reflect.DeepEqual(summary, want) {
		t.Errorf("ListDeviceIdentities = %v, want %v", summary, want)
	}
	// Credentials stay out of the token list unless asked for.
	list, _ := s.ListTokens(ctx, false)
	for _, l := range list {
		if strings.HasPrefix(l.Name, DeviceCredentialPrefix) {
			t.Errorf("ListTokens(false) lists %s", l.Name)
		}
	}
	all, _ := s.ListTokens(ctx, true)
	if len(all) != len(list)+3 { // c1, c5, c6
		t.Errorf("ListTokens(true) has %d tokens, want %d", len(all), len(list)+3)
	}
	wantErr(t, "credential without device", s.EnrollDevice(ctx, Token{Name: "device/x", Role: auth.RoleDevice}, "x"), ErrInvalid)
}

func tokenHash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func testTokens(t *testing.T, s *Store) {
	ctx := context.Background()
	tok := func(id, name string, role auth.Role, secret string) Token {
		return Token{ID: id, Name: name, Role: role, Hash: tokenHash(secret), CreatedAt: at(1), CreatedBy: "admin:ana"}
	}
	creates := []struct {
		name string
		t    Token
		want error
	}{
		{"ci", tok("t1", "ci", auth.RoleRelease, "s1"), nil},
		{"admin", tok("t2", "ana", auth.RoleAdmin, "s2"), nil},
		{"same-name", tok("t3", "ci", auth.RoleRelease, "s3"), ErrDuplicate},
		{"same-id", tok("t1", "ci-2", auth.RoleRelease, "s4"), ErrDuplicate},
		{"same-hash", tok("t5", "ci-3", auth.RoleRelease, "s1"), ErrDuplicate},
		{"bad-role", tok("t6", "x", "root", "s6"), ErrInvalid},
		{"short-hash", Token{ID: "t7", Name: "y", Role: auth.RoleDevice, Hash: []byte("abc"), CreatedAt: at(1), CreatedBy: "a"}, ErrInvalid},
		{"no-name", tok("t8", "", auth.RoleDevice, "s8"), ErrInvalid},
		{"bound-admin", Token{ID: "t10", Name: "z", Role: auth.RoleAdmin, Hash: tokenHash("s10"), CreatedAt: at(1), CreatedBy: "a", DeviceID: "pc"}, ErrInvalid},
		{"expired-at-birth", Token{ID: "t11", Name: "z", Role: auth.RoleAdmin, Hash: tokenHash("s11"), CreatedAt: at(1), CreatedBy: "a", ExpiresAt: at(1)}, ErrInvalid},
		{"enroll", Token{ID: "t12", Name: "escuela", Role: auth.RoleEnroll, Hash: tokenHash("s12"), CreatedAt: at(1), CreatedBy: "a", ExpiresAt: at(100)}, nil},
		{"bound-device", Token{ID: "t13", Name: "kiosk", Role: auth.RoleDevice, Hash: tokenHash("s13"), CreatedAt: at(1), CreatedBy: "a", DeviceID: "pc", ExpiresAt: at(100)}, nil},
		{"capped-enroll", Token{ID: "t14", Name: "aula-3", Role: auth.RoleEnroll, Hash: tokenHash("s14"), CreatedAt: at(1), CreatedBy: "a", ExpiresAt: at(100), MaxDevices: 3}, nil},
		{"capped-admin", Token{ID: "t15", Name: "w", Role: auth.RoleAdmin, Hash: tokenHash("s15"), CreatedAt: at(1), CreatedBy: "a", MaxDevices: 3}, ErrInvalid},
		{"negative-cap", Token{ID: "t16", Name: "v", Role: auth.RoleEnroll, Hash: tokenHash("s16"), CreatedAt: at(1), CreatedBy: "a", MaxDevices: -1}, ErrInvalid},
	}
	for _, c := range creates {
		wantErr(t, c.name, s.CreateToken(ctx, c.t), c.want)
	}
	got, err := s.TokenByHash(ctx, tokenHash("s1"))
	want := tok("t1", "ci", auth.RoleRelease, "s1")
	want.CreatedAt = stored(want.CreatedAt)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("TokenByHash = %+v, %v; want %+v", got, err, want)
	}
	_, err = s.TokenByHash(ctx, tokenHash("unknown"))
	wantErr(t, "unknown hash", err, ErrNotFound)
	if got, err := s.TokenByHash(ctx, tokenHash("s13")); err != nil || got.DeviceID != "pc" || !got.ExpiresAt.Equal(stored(at(100))) ||
		got.Expired(at(99)) || !got.Expired(at(100)) {
		t.Errorf("bound device token = %+v, %v", got, err)
	}
	if got, err := s.TokenByHash(ctx, tokenHash("s14")); err != nil || got.MaxDevices != 3 {
		t.Errorf("capped enroll token = %+v, %v", got, err)
	}
	if got, err := s.TokenByHash(ctx, tokenHash("s12")); err != nil || got.MaxDevices != 0 {
		t.Errorf("enroll token without a cap = %+v, %v", got, err)
	}
	if n, err := s.CountLiveTokens(ctx, auth.RoleEnroll, at(99)); err != nil || n != 2 {
		t.Errorf("live enroll tokens = %d, %v", n, err)
	}
	if n, err := s.CountLiveTokens(ctx, auth.RoleEnroll, at(100)); err != nil || n != 0 {
		t.Errorf("live enroll tokens once expired = %d, %v", n, err)
	}
	_, err = s.TokenByHash(ctx, []byte("short"))
	wantErr(t, "short hash", err, ErrInvalid)

	revoked, err := s.RevokeToken(ctx, "ci", at(7))
	if err != nil || revoked.ID != "t1" || !revoked.RevokedAt.Equal(stored(at(7))) {
		t.Fatalf("RevokeToken(ci) = %+v, %v", revoked, err)
	}
	_, err = s.TokenByHash(ctx, tokenHash("s1"))
	wantErr(t, "revoked token", err, ErrNotFound)
	_, err = s.RevokeToken(ctx, "ci", at(8))
	wantErr(t, "revoke twice", err, ErrNotFound)
	_, err = s.RevokeToken(ctx, "t1", at(8))
	wantErr(t, "revoke twice by id", err, ErrNotFound)
	wantErr(t, "reuse name after revoke", s.CreateToken(ctx, tok("t9", "ci", auth.RoleRelease, "s9")), nil)
	if r, err := s.RevokeToken(ctx, "t2", at(9)); err != nil || r.Name != "ana" {
		t.Errorf("RevokeToken(t2) = %+v, %v", r, err)
	}

	list, err := s.ListTokens(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, l := range list {
		if l.Hash != nil {
			t.Errorf("ListTokens returned a hash for %s", l.ID)
		}
		summary = append(summary, fmt.Sprintf("%s/%s/%s/%v", l.ID, l.Name, l.Role, !l.RevokedAt.IsZero()))
	}
	if want := []string{"t1/ci/release/true", "t12/escuela/enroll/false", "t13/kiosk/device/false", "t14/aula-3/enroll/false", "t2/ana/admin/true", "t9/ci/release/false"}; !reflect.DeepEqual(summary, want) {
		t.Errorf("ListTokens = %v, want %v", summary, want)
	}
}

func auditEntry(i int) Entry {
	return Entry{
		Actor: fmt.Sprintf("token:worker-%d", i%8), Action: "publish",
		Subject: fmt.Sprintf("testing/x86_64 10.%d", i),
		Detail:  fmt.Sprintf(`{"n":%d,"note":"¡más rápido!"}`, i), At: at(i),
	}
}

// appendAll appends n entries one after another.
func appendAll(t *testing.T, s *Store, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.AppendAudit(context.Background(), auditEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func testAuditConcurrent(t *testing.T, s *Store) {
	ctx := context.Background()
	const n, workers = 50, 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := s.AppendAudit(ctx, auditEntry(i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}
	if err := s.VerifyAudit(ctx); err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	var all []Entry
	for after := int64(0); ; {
		page, err := s.ListAudit(ctx, after, 20)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 20 {
			break
		}
		after = page[len(page)-1].Seq
	}
	subjects := map[string]bool{}
	for i, e := range all {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		if i > 0 && string(e.PrevHash) != string(all[i-1].Hash) {
			t.Fatalf("entry %d does not link to %d", e.Seq, e.Seq-1)
		}
		subjects[e.Subject] = true
	}
	if len(all) != n || len(subjects) != n {
		t.Fatalf("%d entries with %d distinct subjects, want %d", len(all), len(subjects), n)
	}
	seq, hash, err := s.AuditHead(ctx)
	if err != nil || seq != n || string(hash) != string(all[n-1].Hash) {
		t.Fatalf("AuditHead = %d, %x, %v", seq, hash, err)
	}
}

func testAuditTamper(t *testing.T, open func(t *testing.T) *Store) {
	ctx := context.Background()
	// swap exchanges every column but seq between two entries.
	swap := func(cols string) func(t *testing.T, s *Store) {
		return func(t *testing.T, s *Store) {
			t.Helper()
			names := strings.Split(cols, ", ")
			var a, b [8]any
			ptrs := func(v *[8]any) []any {
				out := make([]any, len(names))
				for i := range names {
					out[i] = &v[i]
				}
				return out
			}
			if err := s.db.QueryRowContext(ctx, `SELECT `+cols+` FROM audit_log WHERE seq = 30`).Scan(ptrs(&a)...); err != nil {
				t.Fatal(err)
			}
			if err := s.db.QueryRowContext(ctx, `SELECT `+cols+` FROM audit_log WHERE seq = 31`).Scan(ptrs(&b)...); err != nil {
				t.Fatal(err)
			}
			var sets []string
			for i, c := range names {
				sets = append(sets, fmt.Sprintf("%s = $%d", c, i+2))
			}
			upd := `UPDATE audit_log SET ` + strings.Join(sets, ", ") + ` WHERE seq = $1`
			if _, err := s.db.ExecContext(ctx, upd, append([]any{30}, b[:len(names)]...)...); err != nil {
				t.Fatal(err)
			}
			if _, err := s.db.ExecContext(ctx, upd, append([]any{31}, a[:len(names)]...)...); err != nil {
				t.Fatal(err)
			}
		}
	}
	exec := func(queries ...string) func(t *testing.T, s *Store) {
		return func(t *testing.T, s *Store) {
			t.Helper()
			for _, q := range queries {
				if _, err := s.db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
		}
	}
	// renumber closes the gap left by deleting entry 23.
	renumber := []string{`DELETE FROM audit_log WHERE seq = 23`}
	for s := 24; s <= 50; s++ {
		renumber = append(renumber, fmt.Sprintf(`UPDATE audit_log SET seq = %d WHERE seq = %d`, s-1, s))
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, s *Store)
		seq    int64
	}{
		{"edit-detail", exec(`UPDATE audit_log SET detail = '{"n":17,"note":"edited"}' WHERE seq = 17`), 17},
		{"edit-actor-first", exec(`UPDATE audit_log SET actor = 'token:mallory' WHERE seq = 1`), 1},
		{"edit-time", exec(`UPDATE audit_log SET logged_at = logged_at + 1 WHERE seq = 40`), 40},
		{"edit-last-hash", exec(`UPDATE audit_log SET hash = prev_hash WHERE seq = 50`), 50},
		{"delete-middle", exec(`DELETE FROM audit_log WHERE seq = 23`), 23},
		{"delete-and-renumber", exec(renumber...), 23},
		{"swap-rows", swap("actor, action, subject, detail, logged_at, prev_hash, hash"), 30},
		{"swap-content-only", swap("actor, action, subject, detail, logged_at"), 30},
		{"bad-hex", exec(`UPDATE audit_log SET prev_hash = 'zz' WHERE seq = 5`), 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			appendAll(t, s, 50)
			if err := s.VerifyAudit(ctx); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			c.tamper(t, s)
			err := s.VerifyAudit(ctx)
			var ae *AuditError
			if !errors.As(err, &ae) {
				t.Fatalf("VerifyAudit = %v, want *AuditError", err)
			}
			if ae.Seq != c.seq {
				t.Fatalf("VerifyAudit = %v, want seq %d", err, c.seq)
			}
		})
	}
}

func testAuditInput(t *testing.T, s *Store) {
	ctx := context.Background()
	e, err := s.AppendAudit(ctx, auditEntry(0))
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 1 || !e.At.Equal(stored(at(0))) || e.At != stored(at(0)) || string(e.PrevHash) != string(make([]byte, 32)) || len(e.Hash) != 32 {
		t.Errorf("first entry = %+v", e)
	}
	got, err := s.ListAudit(ctx, 0, 0)
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], e) {
		t.Errorf("ListAudit = %+v, %v; want [%+v]", got, err, e)
	}
	noDetail := auditEntry(1)
	noDetail.Detail = ""
	if _, err := s.AppendAudit(ctx, noDetail); err != nil {
		t.Errorf("entry without detail: %v", err)
	}
	bad := []struct {
		name  string
		alter func(e *Entry)
	}{
		{"no-actor", func(e *Entry) { e.Actor = "" }},
		{"no-action", func(e *Entry) { e.Action = "" }},
		{"no-time", func(e *Entry) { e.At = time.Time{} }},
		{"detail-not-json", func(e *Entry) { e.Detail = "{oops" }},
		{"actor-nul", func(e *Entry) { e.Actor = "a\x00" }},
		{"detail-too-long", func(e *Entry) { e.Detail = `"` + strings.Repeat("x", maxText) + `"` }},
	}
	for _, b := range bad {
		e := auditEntry(2)
		b.alter(&e)
		_, err := s.AppendAudit(ctx, e)
		wantErr(t, b.name, err, ErrInvalid)
	}
	if err := s.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if seq, _, _ := s.AuditHead(ctx); seq != 2 {
		t.Fatalf("head after refused appends = %d, want 2", seq)
	}
}

var errBoom = errors.New("boom")

func testTx(t *testing.T, s *Store) {
	ctx := context.Background()
	publish := func(tx *Tx, version string) error {
		if err := tx.AddRelease(ctx, release("testing", "x86_64", version)); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, Entry{Actor: "token:ci", Action: "publish", Subject: "testing/x86_64 " + version, At: at(1)})
		return err
	}
	// A failure after both writes rolls back both.
	err := s.Tx(ctx, func(tx *Tx) error {
		if err := publish(tx, "10.1"); err != nil {
			return err
		}
		return errBoom
	})
	wantErr(t, "failing tx", err, errBoom)
	_, err = s.GetRelease(ctx, "testing", "x86_64", "10.1")
	wantErr(t, "release after rollback", err, ErrNotFound)
	if seq, _, err := s.AuditHead(ctx); err != nil || seq != 0 {
		t.Fatalf("audit head after rollback = %d, %v", seq, err)
	}

	// A panic rolls back too, and propagates.
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("panic inside Tx was swallowed")
			}
		}()
		_ = s.Tx(ctx, func(tx *Tx) error {
			if err := publish(tx, "10.1"); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	if seq, _, _ := s.AuditHead(ctx); seq != 0 {
		t.Fatalf("audit head after panic = %d", seq)
	}

	// Success commits both; the rolled-back appends used no sequence number.
	wantErr(t, "commit", s.Tx(ctx, func(tx *Tx) error { return publish(tx, "10.1") }), nil)
	if _, err := s.GetRelease(ctx, "testing", "x86_64", "10.1"); err != nil {
		t.Fatal(err)
	}
	if seq, _, _ := s.AuditHead(ctx); seq != 1 {
		t.Fatalf("audit head after commit = %d, want 1", seq)
	}

	// An error from a store method inside the transaction undoes the
	// earlier writes of the same transaction.
	err = s.Tx(ctx, func(tx *Tx) error {
		if err := publish(tx, "10.2"); err != nil {
			return err
		}
		return publish(tx, "10.2") // duplicate
	})
	wantErr(t, "duplicate inside tx", err, ErrDuplicate)
	if _, err := s.GetRelease(ctx, "testing", "x86_64", "10.2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("10.2 survived the rollback: %v", err)
	}
	if err := s.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if seq, _, _ := s.AuditHead(ctx); seq != 1 {
		t.Fatalf("audit head = %d, want 1", seq)
	}

	// Reads inside a transaction see its own writes.
	err = s.Tx(ctx, func(tx *Tx) error {
		if err := publish(tx, "10.3"); err != nil {
			return err
		}
		r, err := tx.LatestRelease(ctx, "testing", "x86_64")
		if err != nil || r.Version != "10.3" {
			return fmt.Errorf("LatestRelease in tx = %+v, %v", r, err)
		}
		return tx.VerifyAudit(ctx)
	})
	wantErr(t, "read own writes", err, nil)
}

// testInput checks that text either engine would treat differently is
// refused the same way everywhere.
func testInput(t *testing.T, s *Store) {
	ctx := context.Background()
	long := strings.Repeat("x", maxKey+1)
	cases := []struct {
		name string
		err  error
	}{
		{"device-id-invalid-utf8", s.UpsertDevice(ctx, device("\xc3\x28", "stable", "", 1))},
		{"device-id-too-long", s.UpsertDevice(ctx, device(long, "stable", "", 1))},
		{"group-nul", s.SetDeviceGroup(ctx, "d1", "lab\x00")},
		{"pin-target-long", s.SetPin(ctx, Pin{Scope: PinGroup, Target: long, Channel: "edu", CreatedBy: "a", CreatedAt: at(1)})},
		{"rollout-reason-invalid", s.SetRolloutState(ctx, "r1", rollout.StateActive, rollout.StateHalted, "\xff", at(1))},
	}
	for _, c := range cases {
		wantErr(t, c.name, c.err, ErrInvalid)
	}
	// Non-ASCII text round-trips byte for byte.
	d := device("équipo-ñ-01", "stable", "laboratorio-3º", 1)
	if err := s.UpsertDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetDevice(ctx, d.ID); err != nil || got.Group != d.Group {
		t.Fatalf("GetDevice(%q) = %+v, %v", d.ID, got, err)
	}
}
