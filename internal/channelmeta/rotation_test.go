package channelmeta_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
)

// forgeRoot writes the next root version for keys into dir, signed by
// exactly signers (bypassing RotateRoot's own checks).
func forgeRoot(t *testing.T, dir string, keys publish.Keys, now time.Time, signers ...signature.Signer) []byte {
	t.Helper()
	cur, err := metadata.Root().FromBytes(readFile(t, dir, channelmeta.RootFile))
	if err != nil {
		t.Fatal(err)
	}
	md, err := buildRoot(keys, cur.Signed.Version+1, normTime(now.Add(365*24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, versioned(md.Signed.Version, channelmeta.RootFile), raw)
	return raw
}

// Root rotation signed by the old and the new root keys is followed by
// devices, from their cache and from the shipped root alike, across
// several rotations; afterwards the old root key alone is powerless.
func TestRootRotationAccepted(t *testing.T) {
	s := newScene(t)
	k2, k3 := newSigner(t), newSigner(t)
	keys2 := publish.Keys{Root: roleKeys(t, 1, k2), Release: s.f.keys.Release, Online: s.f.keys.Online}
	if err := s.f.repo.RotateRoot(keys2, []signature.Signer{s.f.release, k2}, nil, s.now); err != nil {
		t.Fatalf("RotateRoot 1→2: %v", err)
	}
	copyDir(t, s.f.dir, s.mirror)
	if st := mustLoad(t, s.dev); st.RootVersion != 2 || len(st.Releases) != 2 {
		t.Fatalf("after rotation: root v%d, %d releases", st.RootVersion, len(st.Releases))
	}

	keys3 := publish.Keys{Root: roleKeys(t, 2, k2, k3), Release: s.f.keys.Release, Online: s.f.keys.Online}
	if err := s.f.repo.RotateRoot(keys3, []signature.Signer{k2, k3}, nil, s.now); err != nil {
		t.Fatalf("RotateRoot 2→3: %v", err)
	}
	copyDir(t, s.f.dir, s.mirror)
	if st := mustLoad(t, s.dev); st.RootVersion != 3 {
		t.Fatalf("cached device after second rotation: root v%d", st.RootVersion)
	}
	if st := mustLoad(t, dirClient(t, s.f.root, s.mirror, s.now)); st.RootVersion != 3 {
		t.Fatalf("device shipping root v1: root v%d, want 3 through the chain", st.RootVersion)
	}

	// The retired root key (the release key) signs a root 4 on its own,
	// or with one of the two required new keys: refused.
	trusted := snapshotDir(t, s.cache)
	evil := publish.Keys{Root: roleKeys(t, 1, s.f.release), Release: s.f.keys.Release, Online: s.f.keys.Online}
	forgeRoot(t, s.mirror, evil, s.now, s.f.release, k2)
	err := wantLoadErr(t, s.dev, channelmeta.ErrBadSignature, "Verifying root failed")
	wantAs[*metadata.ErrUnsignedMetadata](t, err)
	sameFiles(t, trusted, snapshotDir(t, s.cache))
}

// A rotation signed only by the new key (or only by the old key) is
// refused: by RotateRoot, by the server, and by the device.
func TestRootRotationRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		signers func(old, new signature.Signer) []signature.Signer
	}{
		{"new key only", func(_, n signature.Signer) []signature.Signer { return []signature.Signer{n} }},
		{"old key only", func(o, _ signature.Signer) []signature.Signer { return []signature.Signer{o} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t)
			k2 := newSigner(t)
			keys2 := publish.Keys{Root: roleKeys(t, 1, k2), Release: s.f.keys.Release, Online: s.f.keys.Online}
			signers := tc.signers(s.f.release, k2)
			if _, err := publish.RotateRoot(s.f.root, keys2, signers, publish.Options{}, s.now); !errors.Is(err, channelmeta.ErrBadSignature) {
				t.Errorf("RotateRoot: %v, want ErrBadSignature", err)
			}
			if err := s.f.repo.RotateRoot(keys2, signers, nil, s.now); !errors.Is(err, channelmeta.ErrBadSignature) {
				t.Errorf("Repo.RotateRoot: %v, want ErrBadSignature", err)
			}
			raw := forgeRoot(t, s.mirror, keys2, s.now, signers...)
			if err := s.f.repo.AcceptRoot(raw, nil, s.now); !errors.Is(err, channelmeta.ErrBadSignature) {
				t.Errorf("AcceptRoot: %v, want ErrBadSignature", err)
			}
			trusted := snapshotDir(t, s.cache)
			err := wantLoadErr(t, s.dev, channelmeta.ErrBadSignature, "Verifying root failed")
			wantAs[*metadata.ErrUnsignedMetadata](t, err)
			sameFiles(t, trusted, snapshotDir(t, s.cache))
			wantLoadErr(t, dirClient(t, s.f.root, s.mirror, s.now), channelmeta.ErrBadSignature, "2.root.json")
		})
	}
}

// Rotating the online key is a root rotation plus re-signed targets (the
// delegation names the online key). Afterwards the old online key can no
// longer sign a timestamp, and the rollout state survives.
func TestRotateOnlineKey(t *testing.T) {
	s := newScene(t)
	online2 := newSigner(t)
	keys2 := publish.Keys{Root: s.f.keys.Root, Release: s.f.keys.Release, Online: roleKeys(t, 1, online2)}

	// Without re-signed targets the server refuses the rotation.
	rootData, err := publish.RotateRoot(readFile(t, s.f.dir, channelmeta.RootFile), keys2, []signature.Signer{s.f.release}, publish.Options{}, s.now)
	if err != nil {
		t.Fatal(err)
	}
	both, err := publish.Open(s.f.dir, []signature.Signer{s.f.online, online2}, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := both.AcceptRoot(rootData, nil, s.now); !errors.Is(err, publish.ErrNeedTargets) {
		t.Fatalf("AcceptRoot without targets: %v, want ErrNeedTargets", err)
	}
	if err := both.RotateRoot(keys2, []signature.Signer{s.f.release}, nil, s.now); !errors.Is(err, publish.ErrNeedTargets) {
		t.Fatalf("RotateRoot without release signers: %v, want ErrNeedTargets", err)
	}
	// The old online key alone cannot drive the new root.
	if err := s.f.repo.RotateRoot(keys2, []signature.Signer{s.f.release}, []signature.Signer{s.f.release}, s.now); !errors.Is(err, publish.ErrInvalid) {
		t.Fatalf("RotateRoot with only the old online signer loaded: %v, want ErrInvalid", err)
	}

	if err := both.RotateRoot(keys2, []signature.Signer{s.f.release}, []signature.Signer{s.f.release}, s.now); err != nil {
		t.Fatalf("RotateRoot: %v", err)
	}
	repo2, err := publish.Open(s.f.dir, []signature.Signer{online2}, publish.Options{})
	if err != nil {
		t.Fatalf("Open with the new online key: %v", err)
	}
	later := s.now.Add(time.Hour)
	if _, err := repo2.Refresh(later); err != nil {
		t.Fatal(err)
	}
	copyDir(t, s.f.dir, s.mirror)
	st := mustLoad(t, s.dev)
	if st.RootVersion != 2 || len(st.Releases) != 2 || len(st.Rollouts) != 1 || st.TargetsVersion <= s.first.TargetsVersion {
		t.Fatalf("after online key rotation: root v%d targets v%d, %d releases, %d rollouts", st.RootVersion, st.TargetsVersion, len(st.Releases), len(st.Rollouts))
	}
	if _, err := publish.Open(s.f.dir, []signature.Signer{s.f.online}, publish.Options{}); !errors.Is(err, publish.ErrInvalid) {
		t.Errorf("Open with the retired online key: %v, want ErrInvalid", err)
	}

	forgeTop(t, s.mirror, later, s.f.online, s.f.online)
	err = wantLoadErr(t, s.dev, channelmeta.ErrBadSignature, "Verifying timestamp failed")
	wantAs[*metadata.ErrUnsignedMetadata](t, err)
}

// A root rotation that changes the release key carries re-signed targets;
// devices verify the releases under the new key.
func TestRotateReleaseKey(t *testing.T) {
	s := newScene(t)
	rel2 := newSigner(t)
	keys2 := publish.Keys{Root: roleKeys(t, 1, rel2), Release: roleKeys(t, 1, rel2), Online: s.f.keys.Online}
	if err := s.f.repo.RotateRoot(keys2, []signature.Signer{s.f.release, rel2}, []signature.Signer{s.f.release}, s.now); !errors.Is(err, channelmeta.ErrBadSignature) {
		t.Fatalf("RotateRoot re-signing targets with the retired release key: %v, want ErrBadSignature", err)
	}
	if err := s.f.repo.RotateRoot(keys2, []signature.Signer{s.f.release, rel2}, []signature.Signer{rel2}, s.now); err != nil {
		t.Fatal(err)
	}
	copyDir(t, s.f.dir, s.mirror)
	st := mustLoad(t, s.dev)
	if st.RootVersion != 2 || len(st.Releases) != 2 {
		t.Fatalf("root v%d, %d releases", st.RootVersion, len(st.Releases))
	}
	// The retired release key can no longer publish.
	if err := s.f.repo.PublishTargets(testReleases(), []signature.Signer{s.f.release}, s.now); !errors.Is(err, channelmeta.ErrBadSignature) {
		t.Errorf("PublishTargets with the retired release key: %v", err)
	}
	mirror2 := filepath.Join(t.TempDir(), "m2")
	copyDir(t, s.f.dir, mirror2)
	md := loadTargetsFile(t, mirror2, channelmeta.TargetsFile)
	forgeRole(t, mirror2, channelmeta.TargetsFile, md, s.now, s.f.release)
	forgeTop(t, mirror2, s.now, s.f.online, s.f.online)
	wantLoadErr(t, dirClient(t, s.f.root, mirror2, s.now), channelmeta.ErrBadSignature, "Verifying targets failed")
}
