package channelmeta_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// The full path: init, publish two releases and a rollout, refresh, and a
// device loads and sees exactly them, over HTTP and from a directory; then
// the server moves on and the same device (same cache) follows.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(testing.TB, []byte, string, time.Time) *channelmeta.Client
	}{
		{"http", httpClient},
		{"dir", dirClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, t0, publish.Options{})
			f.publish(t, t0)
			now := t0.Add(13 * time.Hour)
			res, err := f.repo.Refresh(now)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Resigned, []string{"timestamp"}) {
				t.Errorf("Refresh after 13h re-signed %v, want [timestamp]", res.Resigned)
			}

			c := tc.client(t, f.root, f.dir, now)
			st := mustLoad(t, c)
			want := testReleases()
			for i := range want {
				want[i].PublishedAt = normTime(want[i].PublishedAt)
			}
			if !reflect.DeepEqual(st.Releases, want) {
				t.Errorf("releases:\n got %+v\nwant %+v", st.Releases, want)
			}
			if len(st.Rollouts) != 1 || !reflect.DeepEqual(st.Rollouts[0], testRollout(t)) {
				t.Errorf("rollouts: got %+v, want [%+v]", st.Rollouts, testRollout(t))
			}
			if len(st.Ignored) != 0 {
				t.Errorf("ignored %v", st.Ignored)
			}
			if st.RootVersion != 1 || st.TargetsVersion != 2 || st.RolloutsVersion != 2 {
				t.Errorf("versions root %d targets %d rollouts %d, want 1 2 2", st.RootVersion, st.TargetsVersion, st.RolloutsVersion)
			}
			if want := res.TimestampExpires; !st.Expires.Equal(want) {
				t.Errorf("Expires %v, want the timestamp's %v", st.Expires, want)
			}
			rel, ok := st.Lookup("stable", "x86_64", "10.2")
			if !ok || rel.Commit != commitOf("10.2") {
				t.Errorf("Lookup 10.2 = %+v, %v", rel, ok)
			}
			if ro, ok := st.Rollout("stable", "x86_64"); !ok || ro.RolloutID != "stable/10.2" {
				t.Errorf("Rollout = %+v, %v", ro, ok)
			}
			if err := channelmeta.CheckOffer(st, channelmeta.Offer{Channel: "stable", Arch: "x86_64", Version: "10.2", Commit: commitOf("10.2"), Ref: "mxos/10/x86_64/stable"}); err != nil {
				t.Errorf("CheckOffer(signed release): %v", err)
			}

			// The server publishes a third release and halts the rollout;
			// the device, starting from its cache, follows.
			later := now.Add(time.Hour)
			rels := append(testReleases(), channelmeta.Release{Channel: "edu", Arch: "aarch64", Version: "10.2", Ref: "mxos/10/aarch64/edu", Commit: commitOf("edu 10.2")})
			if err := f.repo.PublishTargets(rels, []signature.Signer{f.release}, later); err != nil {
				t.Fatal(err)
			}
			halted := testRollout(t)
			halted.State, halted.HaltReason = rollout.StateHalted, "failure rate 7% > 5% over 1h"
			// The channel's update graph travels with the signed record.
			halted.Barriers = []string{"10.1"}
			halted.DeadEnds = []channelmeta.DeadEnd{{Version: "9.9", Successor: "10.1"}}
			if err := f.repo.PublishRollouts([]channelmeta.RolloutState{halted}, later); err != nil {
				t.Fatal(err)
			}
			c.SetNow(later)
			st2 := mustLoad(t, c)
			if len(st2.Releases) != 3 || st2.TargetsVersion != 3 || st2.TimestampVersion <= st.TimestampVersion {
				t.Errorf("after republish: %d releases, targets v%d, timestamp v%d (was v%d)", len(st2.Releases), st2.TargetsVersion, st2.TimestampVersion, st.TimestampVersion)
			}
			if ro, _ := st2.Rollout("stable", "x86_64"); ro.State != rollout.StateHalted || ro.HaltReason != halted.HaltReason ||
				!reflect.DeepEqual(ro.Graph(), rollout.Graph{Barriers: []string{"10.1"}, DeadEnds: []rollout.DeadEnd{{Version: "9.9", Successor: "10.1"}}}) {
				t.Errorf("rollout after halt: %+v", ro)
			}
			edu, ok := st2.Lookup("edu", "aarch64", "10.2")
			if !ok || !edu.PublishedAt.Equal(normTime(later)) {
				t.Errorf("edu release %+v, %v: want published_at defaulted to %v", edu, ok, later)
			}
			// The server's own view agrees.
			if got, err := f.repo.Releases(); err != nil || !reflect.DeepEqual(got, st2.Releases) {
				t.Errorf("Repo.Releases = %+v, %v", got, err)
			}
			if got, err := f.repo.Rollouts(); err != nil || !reflect.DeepEqual(got, st2.Rollouts) {
				t.Errorf("Repo.Rollouts = %+v, %v", got, err)
			}
		})
	}
}

// Refresh re-signs only what is due, always with a higher version, and
// prunes old versioned files but never roots.
func TestRefresh(t *testing.T) {
	f := newFixture(t, t0, publish.Options{KeepVersions: 2})
	f.publish(t, t0)
	versions := func() [3]int64 {
		return [3]int64{versionOf(t, f.dir, channelmeta.TimestampFile), versionOf(t, f.dir, channelmeta.SnapshotFile), versionOf(t, f.dir, channelmeta.RolloutsFile)}
	}
	steps := []struct {
		at   time.Duration
		want []string
	}{
		{time.Minute, nil},
		{11 * time.Hour, nil},
		{13 * time.Hour, []string{"timestamp"}},
		{14 * time.Hour, nil},
		{26 * time.Hour, []string{"timestamp"}},
		{4 * 24 * time.Hour, []string{"rollouts", "snapshot", "timestamp"}},
		{30 * 24 * time.Hour, []string{"rollouts", "snapshot", "timestamp"}},
	}
	prev := versions()
	for _, s := range steps {
		res, err := f.repo.Refresh(t0.Add(s.at))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Resigned, s.want) {
			t.Errorf("Refresh at +%v re-signed %v, want %v", s.at, res.Resigned, s.want)
		}
		cur := versions()
		for i, role := range []string{"timestamp", "snapshot", "rollouts"} {
			resigned := slices.Contains(res.Resigned, role)
			if resigned && cur[i] != prev[i]+1 || !resigned && cur[i] != prev[i] {
				t.Errorf("at +%v %s version %d → %d (re-signed: %v)", s.at, role, prev[i], cur[i], resigned)
			}
		}
		prev = cur
		if !res.TimestampExpires.After(t0.Add(s.at)) {
			t.Errorf("at +%v timestamp expires %v", s.at, res.TimestampExpires)
		}
	}
	// A device at the last step is happy.
	mustLoad(t, dirClient(t, f.root, f.dir, t0.Add(30*24*time.Hour)))

	files := snapshotDir(t, f.dir)
	re := regexp.MustCompile(`^([0-9]+)\.snapshot\.json$`)
	var snaps int
	for name := range files {
		if re.MatchString(name) {
			snaps++
		}
	}
	if snaps != 2 {
		t.Errorf("%d versioned snapshots kept, want KeepVersions=2: %v", snaps, keysOf(files))
	}
	if _, ok := files["1.root.json"]; !ok {
		t.Error("1.root.json was pruned")
	}
}

func TestInitAndKeyChecks(t *testing.T) {
	rel, onl, other := newSigner(t), newSigner(t), newSigner(t)
	good := publish.Keys{Root: roleKeys(t, 1, rel), Release: roleKeys(t, 1, rel), Online: roleKeys(t, 1, onl)}
	for _, tc := range []struct {
		name        string
		keys        publish.Keys
		rootSigners []signature.Signer
		relSigners  []signature.Signer
		want        error
	}{
		{"online key is the release key", publish.Keys{Root: good.Root, Release: good.Release, Online: roleKeys(t, 1, rel)}, []signature.Signer{rel}, []signature.Signer{rel}, publish.ErrInvalid},
		{"online key is a root key", publish.Keys{Root: roleKeys(t, 1, rel, onl), Release: good.Release, Online: good.Online}, []signature.Signer{rel}, []signature.Signer{rel}, publish.ErrInvalid},
		{"threshold above key count", publish.Keys{Root: roleKeys(t, 2, rel), Release: good.Release, Online: good.Online}, []signature.Signer{rel}, []signature.Signer{rel}, publish.ErrInvalid},
		{"zero threshold", publish.Keys{Root: good.Root, Release: roleKeys(t, 0, rel), Online: good.Online}, []signature.Signer{rel}, []signature.Signer{rel}, publish.ErrInvalid},
		{"duplicate key", publish.Keys{Root: roleKeys(t, 1, rel, rel), Release: good.Release, Online: good.Online}, []signature.Signer{rel}, []signature.Signer{rel}, publish.ErrInvalid},
		{"root threshold 2, one signer", publish.Keys{Root: roleKeys(t, 2, rel, other), Release: good.Release, Online: good.Online}, []signature.Signer{rel}, []signature.Signer{rel}, channelmeta.ErrBadSignature},
		{"release signer is not the release key", good, []signature.Signer{rel}, []signature.Signer{onl}, channelmeta.ErrBadSignature},
		{"root threshold 2, two signers", publish.Keys{Root: roleKeys(t, 2, rel, other), Release: good.Release, Online: good.Online}, []signature.Signer{rel, other}, []signature.Signer{rel}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			err := publish.Init(dir, tc.keys, tc.rootSigners, tc.relSigners, publish.Options{}, t0)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Init: %v, want %v", err, tc.want)
			}
			if err != nil {
				if _, serr := os.Stat(filepath.Join(dir, channelmeta.RootFile)); serr == nil {
					t.Error("a refused Init wrote root.json")
				}
				return
			}
			// The threshold-2 root works end to end.
			repo, err := publish.Open(dir, []signature.Signer{onl}, publish.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := repo.Refresh(t0); err != nil {
				t.Fatal(err)
			}
			st := mustLoad(t, dirClient(t, readFile(t, dir, channelmeta.RootFile), dir, t0))
			if len(st.Releases) != 0 {
				t.Errorf("fresh repository has releases %v", st.Releases)
			}
			if err := publish.Init(dir, tc.keys, tc.rootSigners, tc.relSigners, publish.Options{}, t0); !errors.Is(err, publish.ErrExists) {
				t.Errorf("second Init: %v, want ErrExists", err)
			}
		})
	}
}

func TestOpenChecksOnlineSigners(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	if _, err := publish.Open(f.dir, []signature.Signer{f.release}, publish.Options{}); !errors.Is(err, publish.ErrInvalid) {
		t.Errorf("Open with the release key as online key: %v, want ErrInvalid", err)
	}
	ro, err := publish.Open(f.dir, nil, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Refresh(t0); !errors.Is(err, publish.ErrNoOnlineKey) {
		t.Errorf("Refresh without online key: %v", err)
	}
	if err := ro.PublishRollouts(nil, t0); !errors.Is(err, publish.ErrNoOnlineKey) {
		t.Errorf("PublishRollouts without online key: %v", err)
	}
}

// Input records are validated before anything is signed.
func TestPublishValidation(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	f.publish(t, t0)
	before := snapshotDir(t, f.dir)
	bad := func(mut func(*channelmeta.Release)) []channelmeta.Release {
		r := testReleases()
		mut(&r[1])
		return r
	}
	for name, rels := range map[string][]channelmeta.Release{
		"short commit":     bad(func(r *channelmeta.Release) { r.Commit = "abc" }),
		"uppercase commit": bad(func(r *channelmeta.Release) { r.Commit = "A" + r.Commit[1:] }),
		"slash in version": bad(func(r *channelmeta.Release) { r.Version = "10/2" }),
		"glob in arch":     bad(func(r *channelmeta.Release) { r.Arch = "x86_*" }),
		"bad ref":          bad(func(r *channelmeta.Release) { r.Ref = "mxos//stable" }),
		"bad digest":       bad(func(r *channelmeta.Release) { r.OCIDigest = "md5:00" }),
		"duplicate":        append(testReleases(), testReleases()[0]),
	} {
		if err := f.repo.PublishTargets(rels, []signature.Signer{f.release}, t0); !errors.Is(err, publish.ErrInvalid) {
			t.Errorf("%s: PublishTargets %v, want ErrInvalid", name, err)
		}
	}
	ro := testRollout(t)
	other := ro
	other.Version = "9.9"
	noRamp := ro
	noRamp.Ramp = rollout.Ramp{}
	badState := ro
	badState.State = "exploded"
	badBarrier := ro
	badBarrier.Barriers = []string{"10/1"}
	badDeadEnd := ro
	badDeadEnd.DeadEnds = []channelmeta.DeadEnd{{Version: "9.9", Successor: "*"}}
	for name, tc := range map[string]struct {
		states []channelmeta.RolloutState
		want   error
	}{
		"unsigned version": {[]channelmeta.RolloutState{other}, channelmeta.ErrNotSigned},
		"no ramp":          {[]channelmeta.RolloutState{noRamp}, publish.ErrInvalid},
		"bad state":        {[]channelmeta.RolloutState{badState}, publish.ErrInvalid},
		"bad barrier":      {[]channelmeta.RolloutState{badBarrier}, publish.ErrInvalid},
		"bad dead end":     {[]channelmeta.RolloutState{badDeadEnd}, publish.ErrInvalid},
		"two for one arch": {[]channelmeta.RolloutState{ro, ro}, publish.ErrInvalid},
	} {
		if err := f.repo.PublishRollouts(tc.states, t0); !errors.Is(err, tc.want) {
			t.Errorf("%s: PublishRollouts %v, want %v", name, err, tc.want)
		}
	}
	sameFiles(t, before, snapshotDir(t, f.dir))
}

// Server-side acceptance of uploaded targets refuses what devices would
// refuse, and more (a delegation that would give the online key releases).
func TestAcceptTargets(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	f.publish(t, t0)
	root := readFile(t, f.dir, channelmeta.RootFile)
	cur := readFile(t, f.dir, channelmeta.TargetsFile)
	build := func(signers []signature.Signer, now time.Time) []byte {
		t.Helper()
		data, err := publish.BuildTargets(root, cur, testReleases(), []signature.Signer{f.release}, publish.Options{}, now)
		if err != nil {
			t.Fatal(err)
		}
		md, err := metadata.Targets().FromBytes(data)
		if err != nil {
			t.Fatal(err)
		}
		md.ClearSignatures()
		for _, s := range signers {
			if _, err := md.Sign(s); err != nil {
				t.Fatal(err)
			}
		}
		out, err := md.ToBytes(true)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	mutate := func(fn func(*metadata.Metadata[metadata.TargetsType])) []byte {
		t.Helper()
		md, err := metadata.Targets().FromBytes(build(nil, t0))
		if err != nil {
			t.Fatal(err)
		}
		fn(md)
		md.ClearSignatures()
		if _, err := md.Sign(f.release); err != nil {
			t.Fatal(err)
		}
		out, err := md.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"signed by the online key", build([]signature.Signer{f.online}, t0), channelmeta.ErrBadSignature},
		{"signed by nobody", build(nil, t0), channelmeta.ErrBadSignature},
		{"same version again", cur, channelmeta.ErrRollback},
		{"expired", build([]signature.Signer{f.release}, t0.Add(-100*24*time.Hour)), channelmeta.ErrExpired},
		{"garbage", []byte("{\"signed\": 1"), channelmeta.ErrMalformed},
		{"delegates releases too", mutate(func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Delegations.Roles[0].Paths = []string{"*"}
		}), channelmeta.ErrMalformed},
		{"delegates to the release key", mutate(func(md *metadata.Metadata[metadata.TargetsType]) {
			k, _ := metadata.KeyFromPublicKey(pub(t, f.release))
			id, _ := k.ID()
			md.Signed.Delegations.Keys = map[string]*metadata.Key{id: k}
			md.Signed.Delegations.Roles[0].KeyIDs = []string{id}
		}), channelmeta.ErrMalformed},
		{"non-terminating delegation", mutate(func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Delegations.Roles[0].Terminating = false
		}), channelmeta.ErrMalformed},
		{"a target outside releases/", mutate(func(md *metadata.Metadata[metadata.TargetsType]) {
			tf, _ := rolloutTarget(testRollout(t))
			md.Signed.Targets[tf.Path] = tf
		}), channelmeta.ErrMalformed},
		{"record under another path", mutate(func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Targets["releases/stable/x86_64/10.9"] = md.Signed.Targets["releases/stable/x86_64/10.2"]
		}), channelmeta.ErrMalformed},
		{"record edited after hashing", mutate(func(md *metadata.Metadata[metadata.TargetsType]) {
			tf := md.Signed.Targets["releases/stable/x86_64/10.2"]
			rel, _ := channelmeta.ParseRelease(tf.Path, tf)
			rel.Commit = commitOf("evil")
			evil, _ := releaseTarget(rel)
			tf.Custom = evil.Custom
		}), channelmeta.ErrHashMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshotDir(t, f.dir)
			if err := f.repo.AcceptTargets(tc.data, t0); !errors.Is(err, tc.want) {
				t.Fatalf("AcceptTargets: %v, want %v", err, tc.want)
			}
			sameFiles(t, before, snapshotDir(t, f.dir))
		})
	}
	if err := f.repo.AcceptTargets(build([]signature.Signer{f.release}, t0), t0); err != nil {
		t.Fatalf("AcceptTargets(good, pretty-printed): %v", err)
	}
	if got := versionOf(t, f.dir, channelmeta.TargetsFile); got != 3 {
		t.Errorf("targets version %d after accept, want 3", got)
	}
}

// Keys in internal/sign's ostree format load as TUF signers, and a secret
// file readable by others is refused.
func TestKeyFiles(t *testing.T) {
	pubKey, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret := base64.StdEncoding.EncodeToString(priv) + "\n"
	if err := os.WriteFile(filepath.Join(dir, sign.Ed25519SecretFile), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	signers, err := publish.LoadEd25519Signers(dir)
	if err != nil || len(signers) != 1 {
		t.Fatalf("LoadEd25519Signers: %v, %d signers", err, len(signers))
	}
	pubs, err := publish.Ed25519PublicKeys(sign.FormatEd25519PublicKeys([]ed25519.PublicKey{pubKey}))
	if err != nil || len(pubs) != 1 {
		t.Fatalf("Ed25519PublicKeys: %v", err)
	}
	if got := pub(t, signers[0]); !pubKey.Equal(got) || !pubKey.Equal(pubs[0]) {
		t.Errorf("signer public key %x, file %x, want %x", got, pubs[0], pubKey)
	}
	// The loaded signer can act as release key end to end.
	online := newSigner(t)
	keys := publish.Keys{Root: publish.RoleKeys{Keys: pubs, Threshold: 1}, Release: publish.RoleKeys{Keys: pubs, Threshold: 1}, Online: roleKeys(t, 1, online)}
	if err := publish.Init(filepath.Join(dir, "m"), keys, signers, signers, publish.Options{}, t0); err != nil {
		t.Fatalf("Init with file keys: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, sign.Ed25519SecretFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.LoadEd25519Signers(dir); err == nil {
		t.Error("LoadEd25519Signers accepted a group-readable secret file")
	}
	if _, err := publish.Ed25519Signer(priv[:10]); !errors.Is(err, publish.ErrInvalid) {
		t.Errorf("Ed25519Signer(short key): %v", err)
	}
}
