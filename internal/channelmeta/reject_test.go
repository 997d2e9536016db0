package channelmeta_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
)

// served sets up the usual scene for attacks: a published repository, a
// mirror directory the device reads (a copy the attacker controls), and a
// device that has already loaded the genuine state once.
type scene struct {
	f      *fixture
	mirror string
	dev    *channelmeta.Client
	cache  string
	first  *channelmeta.State
	now    time.Time
}

func newScene(t *testing.T) *scene {
	t.Helper()
	f := newFixture(t, t0, publish.Options{})
	f.publish(t, t0)
	s := &scene{f: f, mirror: filepath.Join(t.TempDir(), "mirror"), cache: t.TempDir(), now: t0.Add(time.Hour)}
	copyDir(t, f.dir, s.mirror)
	var err error
	s.dev, err = channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: f.root, CacheDir: s.cache, Dir: s.mirror, Now: func() time.Time { return s.now }})
	if err != nil {
		t.Fatal(err)
	}
	s.first = mustLoad(t, s.dev)
	return s
}

// --- expired ---

// A device whose clock is past the timestamp's expiry refuses it: a
// mirror that stopped syncing (or an attacker replaying a stale but
// genuine repository) is detected within the timestamp's lifetime.
func TestRejectExpiredTimestamp(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	f.publish(t, t0)
	c := dirClient(t, f.root, f.dir, t0.Add(25*time.Hour)) // timestamp lives 1 day
	err := wantLoadErr(t, c, channelmeta.ErrExpired, "timestamp.json is expired")
	wantAs[*metadata.ErrExpiredMetadata](t, err)
}

// Metadata signed with a past clock is just as expired.
func TestRejectExpiredSignedInThePast(t *testing.T) {
	past := t0.Add(-3 * 24 * time.Hour)
	f := newFixture(t, past, publish.Options{})
	f.publish(t, past)
	err := wantLoadErr(t, dirClient(t, f.root, f.dir, t0), channelmeta.ErrExpired, "expired")
	wantAs[*metadata.ErrExpiredMetadata](t, err)
}

// A fresh timestamp cannot keep expired release-signed targets alive: the
// online key renews freshness, not the release team's decisions.
func TestRejectExpiredTargets(t *testing.T) {
	opts := publish.Options{TargetsExpiry: 2 * time.Hour}
	f := newFixture(t, t0, opts)
	f.publish(t, t0)
	later := t0.Add(3 * time.Hour)
	if _, err := f.repo.Refresh(later); err != nil {
		t.Fatal(err)
	}
	res, err := f.repo.Refresh(later)
	if err != nil {
		t.Fatal(err)
	}
	if !res.TargetsExpires.Before(later) {
		t.Fatalf("targets expire %v, expected already expired", res.TargetsExpires)
	}
	err = wantLoadErr(t, dirClient(t, f.root, f.dir, later), channelmeta.ErrExpired, "targets is expired")
	wantAs[*metadata.ErrExpiredMetadata](t, err)
}

// --- older version ---

// The mirror serves an older, genuine copy of the whole repository
// (timestamp, snapshot and targets all older than what the device saw):
// refused as a rollback, and the device's trusted state is unchanged, so
// the genuine repository still loads afterwards.
func TestRejectOlderVersionWholeRepo(t *testing.T) {
	s := newScene(t)
	old := filepath.Join(t.TempDir(), "old")
	copyDir(t, s.f.dir, old)
	// The server moves on: a new release, a new rollout version.
	rels := append(testReleases(), channelmeta.Release{Channel: "stable", Arch: "x86_64", Version: "10.3", Ref: "mxos/10/x86_64/stable", Commit: commitOf("10.3")})
	if err := s.f.repo.PublishTargets(rels, []signature.Signer{s.f.release}, s.now); err != nil {
		t.Fatal(err)
	}
	copyDir(t, s.f.dir, s.mirror)
	st := mustLoad(t, s.dev)
	if _, ok := st.Lookup("stable", "x86_64", "10.3"); !ok {
		t.Fatal("new release not seen")
	}
	trusted := snapshotDir(t, s.cache)

	copyDir(t, old, s.mirror) // replay
	err := wantLoadErr(t, s.dev, channelmeta.ErrRollback, "timestamp version")
	wantAs[*metadata.ErrBadVersionNumber](t, err)
	sameFiles(t, trusted, snapshotDir(t, s.cache))

	copyDir(t, s.f.dir, s.mirror)
	if st2 := mustLoad(t, s.dev); st2.TargetsVersion != st.TargetsVersion {
		t.Errorf("after the replay the genuine repo loads targets v%d, want v%d", st2.TargetsVersion, st.TargetsVersion)
	}
}

// A holder of the online key signs a new timestamp naming an older
// snapshot, or a new snapshot naming older targets or rollouts. Each is a
// rollback; the trusted snapshot, targets and rollouts stay as they were.
func TestRejectOlderVersionPinned(t *testing.T) {
	for _, tc := range []struct {
		name  string
		forge func(t *testing.T, s *scene, old string)
		msg   string
	}{
		{"snapshot", func(t *testing.T, s *scene, old string) {
			name := versioned(versionOf(t, old, channelmeta.SnapshotFile), channelmeta.SnapshotFile)
			writeFile(t, s.mirror, name, readFile(t, old, name))
			forgeTimestamp(t, s.mirror, metaOfFile(t, old, channelmeta.SnapshotFile), s.now, s.f.online)
		}, "new snapshot version"},
		{"targets", func(t *testing.T, s *scene, old string) {
			snap := forgeSnapshot(t, s.mirror, map[string]*metadata.MetaFiles{
				channelmeta.TargetsFile:  metaOfFile(t, old, channelmeta.TargetsFile),
				channelmeta.RolloutsFile: metaOfFile(t, s.mirror, channelmeta.RolloutsFile),
			}, s.now, s.f.online)
			forgeTimestamp(t, s.mirror, snap, s.now, s.f.online)
		}, "targets.json"},
		{"rollouts", func(t *testing.T, s *scene, old string) {
			snap := forgeSnapshot(t, s.mirror, map[string]*metadata.MetaFiles{
				channelmeta.TargetsFile:  metaOfFile(t, s.mirror, channelmeta.TargetsFile),
				channelmeta.RolloutsFile: metaOfFile(t, old, channelmeta.RolloutsFile),
			}, s.now, s.f.online)
			forgeTimestamp(t, s.mirror, snap, s.now, s.f.online)
		}, "rollouts.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t)
			old := filepath.Join(t.TempDir(), "old")
			copyDir(t, s.f.dir, old)
			rels := append(testReleases(), channelmeta.Release{Channel: "stable", Arch: "x86_64", Version: "10.3", Ref: "mxos/10/x86_64/stable", Commit: commitOf("10.3")})
			if err := s.f.repo.PublishTargets(rels, []signature.Signer{s.f.release}, s.now); err != nil {
				t.Fatal(err)
			}
			if err := s.f.repo.PublishRollouts([]channelmeta.RolloutState{testRollout(t)}, s.now); err != nil {
				t.Fatal(err)
			}
			copyDir(t, s.f.dir, s.mirror)
			mustLoad(t, s.dev)
			trusted := snapshotDir(t, s.cache)

			tc.forge(t, s, old)
			err := wantLoadErr(t, s.dev, channelmeta.ErrRollback, tc.msg)
			wantAs[*metadata.ErrBadVersionNumber](t, err)
			// A valid newer timestamp is legitimately remembered (it
			// carries the online key's signature); nothing below it is.
			sameFiles(t, trusted, snapshotDir(t, s.cache), channelmeta.TimestampFile)
		})
	}
}

// --- wrong role ---

// Targets (the list of installable releases) signed by the online key
// instead of the release key: refused by the device, and by the server.
func TestRejectTargetsSignedByOnlineKey(t *testing.T) {
	s := newScene(t)
	md := loadTargetsFile(t, s.mirror, channelmeta.TargetsFile)
	evil, err := releaseTarget(channelmeta.Release{Channel: "stable", Arch: "x86_64", Version: "66.6", Ref: "mxos/10/x86_64/stable", Commit: commitOf("evil"), PublishedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	md.Signed.Targets[evil.Path] = evil
	forgeRole(t, s.mirror, channelmeta.TargetsFile, md, s.now, s.f.online)
	forgeTop(t, s.mirror, s.now, s.f.online, s.f.online)
	trusted := snapshotDir(t, s.cache)
	err = wantLoadErr(t, s.dev, channelmeta.ErrBadSignature, "Verifying targets failed")
	wantAs[*metadata.ErrUnsignedMetadata](t, err)
	sameFiles(t, trusted, snapshotDir(t, s.cache), channelmeta.TimestampFile, channelmeta.SnapshotFile)

	if err := s.f.repo.AcceptTargets(readFile(t, s.mirror, channelmeta.TargetsFile), s.now); !errors.Is(err, channelmeta.ErrBadSignature) {
		t.Errorf("server AcceptTargets(online-signed): %v, want ErrBadSignature", err)
	}
	if _, err := publish.BuildTargets(s.f.root, nil, testReleases(), []signature.Signer{s.f.online}, publish.Options{}, s.now); !errors.Is(err, channelmeta.ErrBadSignature) {
		t.Errorf("BuildTargets with the online key: %v, want ErrBadSignature", err)
	}
}

// Rollout state signed by the release key instead of the online key: the
// delegation names the online key only.
func TestRejectRolloutsSignedByReleaseKey(t *testing.T) {
	s := newScene(t)
	md := loadTargetsFile(t, s.mirror, channelmeta.RolloutsFile)
	forgeRole(t, s.mirror, channelmeta.RolloutsFile, md, s.now, s.f.release)
	forgeTop(t, s.mirror, s.now, s.f.online, s.f.online)
	err := wantLoadErr(t, s.dev, channelmeta.ErrBadSignature, "Verifying rollouts failed")
	wantAs[*metadata.ErrUnsignedMetadata](t, err)

	if _, err := publish.Open(s.f.dir, []signature.Signer{s.f.release}, publish.Options{}); !errors.Is(err, publish.ErrInvalid) {
		t.Errorf("server Open with the release key as online key: %v, want ErrInvalid", err)
	}
}

// Timestamp (or snapshot) signed by the release key instead of the online
// key. Holding one key never lets it sign for another role.
func TestRejectTopSignedByReleaseKey(t *testing.T) {
	for _, tc := range []struct {
		name       string
		snapSigner func(*fixture) signature.Signer
		tsSigner   func(*fixture) signature.Signer
		msg        string
	}{
		{"timestamp", func(f *fixture) signature.Signer { return f.online }, func(f *fixture) signature.Signer { return f.release }, "Verifying timestamp failed"},
		{"snapshot", func(f *fixture) signature.Signer { return f.release }, func(f *fixture) signature.Signer { return f.online }, "Verifying snapshot failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t)
			forgeTop(t, s.mirror, s.now, tc.snapSigner(s.f), tc.tsSigner(s.f))
			err := wantLoadErr(t, s.dev, channelmeta.ErrBadSignature, tc.msg)
			wantAs[*metadata.ErrUnsignedMetadata](t, err)
		})
	}
}

// The online key cannot add a release: a releases/ target inside the
// online-signed rollouts role is outside its delegated paths, so it is
// ignored (and reported), and an offer for it is refused as unsigned.
func TestOnlineKeyCannotAddRelease(t *testing.T) {
	s := newScene(t)
	evilRel := channelmeta.Release{Channel: "stable", Arch: "x86_64", Version: "66.6", Ref: "mxos/10/x86_64/stable", Commit: commitOf("evil"), PublishedAt: t0}
	evil, err := releaseTarget(evilRel)
	if err != nil {
		t.Fatal(err)
	}
	// Also try to override a genuine release's commit, and a deeper path.
	override := evilRel
	override.Version = "10.2"
	over, err := releaseTarget(override)
	if err != nil {
		t.Fatal(err)
	}
	md := loadTargetsFile(t, s.mirror, channelmeta.RolloutsFile)
	md.Signed.Targets[evil.Path] = evil
	md.Signed.Targets[over.Path] = over
	deep, err := recordTarget("rollouts/stable/x86_64/extra", testRollout(t))
	if err != nil {
		t.Fatal(err)
	}
	md.Signed.Targets[deep.Path] = deep
	forgeRole(t, s.mirror, channelmeta.RolloutsFile, md, s.now, s.f.online)
	forgeTop(t, s.mirror, s.now, s.f.online, s.f.online)

	st := mustLoad(t, s.dev) // correctly signed by the online key: loads
	if _, ok := st.Lookup("stable", "x86_64", "66.6"); ok {
		t.Error("a release added by the online key is visible")
	}
	if rel, _ := st.Lookup("stable", "x86_64", "10.2"); rel.Commit != commitOf("10.2") {
		t.Errorf("the online key changed 10.2's commit to %s", rel.Commit)
	}
	for _, p := range []string{evil.Path, over.Path, deep.Path} {
		if !strings.Contains(strings.Join(st.Ignored, " "), p) {
			t.Errorf("Ignored %v does not report %s", st.Ignored, p)
		}
	}
	if len(st.Rollouts) != 1 {
		t.Errorf("rollouts %v, want the one genuine rollout", st.Rollouts)
	}
	err = channelmeta.CheckOffer(st, channelmeta.Offer{Channel: "stable", Arch: "x86_64", Version: "66.6", Commit: commitOf("evil")})
	if !errors.Is(err, channelmeta.ErrNotSigned) {
		t.Errorf("CheckOffer(online-key release): %v, want ErrNotSigned", err)
	}
	err = channelmeta.CheckOffer(st, channelmeta.Offer{Channel: "stable", Arch: "x86_64", Version: "10.2", Commit: commitOf("evil")})
	if !errors.Is(err, channelmeta.ErrCommitMismatch) {
		t.Errorf("CheckOffer(online-key override): %v, want ErrCommitMismatch", err)
	}
}

// --- mismatched commit (and the other offer checks) ---

func TestRejectCommitMismatch(t *testing.T) {
	s := newScene(t)
	good := channelmeta.Offer{Channel: "stable", Arch: "x86_64", Version: "10.2", Commit: commitOf("10.2"), Ref: "mxos/10/x86_64/stable", OCIDigest: "sha256:" + commitOf("image 10.2")}
	with := func(fn func(*channelmeta.Offer)) channelmeta.Offer { o := good; fn(&o); return o }
	for _, tc := range []struct {
		name  string
		state *channelmeta.State
		offer channelmeta.Offer
		want  error
	}{
		{"signed release", s.first, good, nil},
		{"signed release, no ref or digest given", s.first, with(func(o *channelmeta.Offer) { o.Ref, o.OCIDigest = "", "" }), nil},
		{"commit differs", s.first, with(func(o *channelmeta.Offer) { o.Commit = commitOf("evil") }), channelmeta.ErrCommitMismatch},
		{"commit of another signed release", s.first, with(func(o *channelmeta.Offer) { o.Commit = commitOf("10.1") }), channelmeta.ErrCommitMismatch},
		{"commit in upper case", s.first, with(func(o *channelmeta.Offer) { o.Commit = strings.ToUpper(o.Commit) }), channelmeta.ErrCommitMismatch},
		{"no commit", s.first, with(func(o *channelmeta.Offer) { o.Commit = "" }), channelmeta.ErrCommitMismatch},
		{"ref differs", s.first, with(func(o *channelmeta.Offer) { o.Ref = "mxos/10/x86_64/testing" }), channelmeta.ErrRefMismatch},
		{"OCI digest differs", s.first, with(func(o *channelmeta.Offer) { o.OCIDigest = "sha256:" + commitOf("evil image") }), channelmeta.ErrDigestMismatch},
		{"unsigned version", s.first, with(func(o *channelmeta.Offer) { o.Version = "10.9" }), channelmeta.ErrNotSigned},
		{"other channel", s.first, with(func(o *channelmeta.Offer) { o.Channel = "edu" }), channelmeta.ErrNotSigned},
		{"other arch", s.first, with(func(o *channelmeta.Offer) { o.Arch = "aarch64" }), channelmeta.ErrNotSigned},
		{"no state", nil, good, channelmeta.ErrNotSigned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := channelmeta.CheckOffer(tc.state, tc.offer)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("CheckOffer: %v, want %v", err, tc.want)
			}
		})
	}
}

// --- garbage ---

func TestRejectMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		file func(*scene) string
		data func(orig []byte) []byte
		want error
		msg  string
	}{
		{"empty timestamp", ts, func([]byte) []byte { return nil }, channelmeta.ErrMalformed, "timestamp.json"},
		{"truncated timestamp", ts, func(b []byte) []byte { return b[:len(b)/2] }, channelmeta.ErrMalformed, "timestamp.json"},
		{"binary timestamp", ts, func([]byte) []byte { return []byte{0, 1, 2, 0xff, '{'} }, channelmeta.ErrMalformed, "timestamp.json"},
		{"JSON of the wrong type", ts, func([]byte) []byte { return []byte(`{"signed":{"_type":"snapshot"},"signatures":[]}`) }, channelmeta.ErrMalformed, `type "snapshot", want "timestamp"`},
		{"signed is not an object", ts, func([]byte) []byte { return []byte(`{"signed":[],"signatures":[]}`) }, channelmeta.ErrMalformed, ""},
		// The scene's device has this snapshot cached and would not fetch
		// it again; a fresh device (see below) does. It is refused by the
		// input check (CheckFile) before go-tuf compares its hash.
		{"truncated snapshot", snap, func(b []byte) []byte { return b[:len(b)-10] }, channelmeta.ErrMalformed, "snapshot.json"},
		{"garbage next root", func(*scene) string { return "2.root.json" }, func([]byte) []byte { return []byte("not json") }, channelmeta.ErrMalformed, "2.root.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t)
			name := tc.file(s)
			var orig []byte
			if name != "2.root.json" {
				orig = readFile(t, s.mirror, name)
			}
			writeFile(t, s.mirror, name, tc.data(orig))
			trusted := snapshotDir(t, s.cache)
			if name == snap(s) {
				wantLoadErr(t, dirClient(t, s.f.root, s.mirror, s.now), tc.want, tc.msg)
				return
			}
			wantLoadErr(t, s.dev, tc.want, tc.msg)
			sameFiles(t, trusted, snapshotDir(t, s.cache))
		})
	}
}

func ts(*scene) string { return channelmeta.TimestampFile }

func snap(s *scene) string {
	return versioned(s.first.SnapshotVersion, channelmeta.SnapshotFile)
}

// --- oversize ---

// Files above their limit are refused by the fetchers before they are
// parsed, whether the server declares the size or not.
func TestRejectOversize(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	f.publish(t, t0)
	big := append(readFile(t, f.dir, channelmeta.TimestampFile), bytes.Repeat([]byte(" "), 20_000)...) // > 16 KiB

	t.Run("http with length", func(t *testing.T) {
		mirror := filepath.Join(t.TempDir(), "m")
		copyDir(t, f.dir, mirror)
		writeFile(t, mirror, channelmeta.TimestampFile, big)
		err := wantLoadErr(t, httpClient(t, f.root, mirror, t0), channelmeta.ErrTooLarge, "timestamp.json")
		wantAs[*metadata.ErrDownloadLengthMismatch](t, err)
	})
	t.Run("http without length", func(t *testing.T) {
		files := http.FileServer(http.Dir(f.dir))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/"+channelmeta.TimestampFile) {
				// Stream with no Content-Length (chunked), more than allowed.
				for range 100 {
					if _, err := w.Write(bytes.Repeat([]byte(" "), 1000)); err != nil {
						return
					}
					w.(http.Flusher).Flush()
				}
				return
			}
			files.ServeHTTP(w, r)
		}))
		defer srv.Close()
		c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: f.root, CacheDir: t.TempDir(), URL: srv.URL, Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		wantLoadErr(t, c, channelmeta.ErrTooLarge, "timestamp.json")
	})
	t.Run("dir", func(t *testing.T) {
		mirror := filepath.Join(t.TempDir(), "m")
		copyDir(t, f.dir, mirror)
		writeFile(t, mirror, channelmeta.TimestampFile, big)
		wantLoadErr(t, dirClient(t, f.root, mirror, t0), channelmeta.ErrTooLarge, "timestamp.json")
	})
	t.Run("snapshot longer than pinned", func(t *testing.T) {
		mirror := filepath.Join(t.TempDir(), "m")
		copyDir(t, f.dir, mirror)
		name := versioned(versionOf(t, mirror, channelmeta.SnapshotFile), channelmeta.SnapshotFile)
		writeFile(t, mirror, name, append(readFile(t, mirror, name), ' '))
		wantLoadErr(t, dirClient(t, f.root, mirror, t0), channelmeta.ErrTooLarge, name)
	})
	t.Run("configured limit", func(t *testing.T) {
		c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: f.root, CacheDir: t.TempDir(), Dir: f.dir, Limits: channelmeta.Limits{Timestamp: 100}, Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		wantLoadErr(t, c, channelmeta.ErrTooLarge, "timestamp.json")
	})
}

func TestNewClientChecks(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	forged := bytes.Replace(f.root, []byte(`"threshold":1`), []byte(`"threshold":2`), 1)
	for name, cfg := range map[string]channelmeta.ClientConfig{
		"no cache":        {TrustedRoot: f.root, Dir: f.dir},
		"no source":       {TrustedRoot: f.root, CacheDir: t.TempDir()},
		"both sources":    {TrustedRoot: f.root, CacheDir: t.TempDir(), Dir: f.dir, URL: "https://example.org/metadata/"},
		"ftp":             {TrustedRoot: f.root, CacheDir: t.TempDir(), URL: "ftp://example.org/metadata/"},
		"garbage root":    {TrustedRoot: []byte("{"), CacheDir: t.TempDir(), Dir: f.dir},
		"root not signed": {TrustedRoot: forged, CacheDir: t.TempDir(), Dir: f.dir},
	} {
		if _, err := channelmeta.NewClient(cfg); err == nil {
			t.Errorf("%s: NewClient accepted", name)
		}
	}
	// Transport failures are ErrFetch, and cancellation is reachable.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	srv := httptest.NewServer(http.FileServer(http.Dir(f.dir)))
	defer srv.Close()
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: f.root, CacheDir: t.TempDir(), URL: srv.URL, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(ctx); !errors.Is(err, channelmeta.ErrFetch) || !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled context: %v, want ErrFetch wrapping context.Canceled", err)
	}
}
