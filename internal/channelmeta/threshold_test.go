package channelmeta_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
)

// A release whose record needs two release signatures is listed for
// devices only when two of root's release keys signed the targets:
// signed by one it is ignored and its offer refused, cosigned it is
// installable. Cosigning checks who signs.
func TestReleaseThreshold(t *testing.T) {
	rel1, rel2, online, stranger := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	dir := t.TempDir()
	keys := publish.Keys{Root: roleKeys(t, 1, rel1), Release: roleKeys(t, 1, rel1, rel2), Online: roleKeys(t, 1, online)}
	if err := publish.Init(dir, keys, []signature.Signer{rel1}, []signature.Signer{rel1}, publish.Options{}, t0); err != nil {
		t.Fatal(err)
	}
	repo, err := publish.Open(dir, []signature.Signer{online}, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Refresh(t0); err != nil {
		t.Fatal(err)
	}
	root := readFile(t, dir, channelmeta.RootFile)
	rels := testReleases()
	rels[1].Threshold = 2
	one, err := publish.BuildTargets(root, readFile(t, dir, channelmeta.TargetsFile), rels, []signature.Signer{rel1}, publish.Options{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := publish.TargetsSigners(root, one); err != nil || n != 1 {
		t.Fatalf("signers of a singly signed targets: %d %v", n, err)
	}
	if _, _, err := publish.CosignTargets(root, one, []signature.Signer{stranger}); !errors.Is(err, publish.ErrInvalid) {
		t.Fatalf("cosign by a key root does not name: %v", err)
	}
	if _, _, err := publish.CosignTargets(root, one, []signature.Signer{rel1}); !errors.Is(err, publish.ErrInvalid) {
		t.Fatalf("cosign by the same key again: %v", err)
	}

	// Below threshold: the release is not offered to devices.
	if err := repo.AcceptTargets(one, t0); err != nil {
		t.Fatal(err)
	}
	st := mustLoad(t, dirClient(t, root, dir, t0))
	if _, ok := st.Lookup("stable", "x86_64", "10.2"); ok {
		t.Fatal("release needing 2 signatures listed with 1")
	}
	if _, ok := st.Lookup("stable", "x86_64", "10.1"); !ok {
		t.Fatal("release needing 1 signature missing")
	}
	err = channelmeta.CheckOffer(st, channelmeta.Offer{Channel: "stable", Arch: "x86_64", Version: "10.2", Commit: rels[1].Commit})
	if !errors.Is(err, channelmeta.ErrNotSigned) || !strings.Contains(err.Error(), "needs 2 release signatures, has 1") {
		t.Fatalf("offer below threshold: %v", err)
	}

	// Cosigned by the second release key: listed.
	next, err := publish.BuildTargets(root, readFile(t, dir, channelmeta.TargetsFile), rels, []signature.Signer{rel1}, publish.Options{}, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	two, n, err := publish.CosignTargets(root, next, []signature.Signer{rel2})
	if err != nil || n != 2 {
		t.Fatalf("cosign: %d %v", n, err)
	}
	if err := repo.AcceptTargets(two, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	st = mustLoad(t, dirClient(t, root, dir, t0.Add(time.Minute)))
	if err := channelmeta.CheckOffer(st, channelmeta.Offer{Channel: "stable", Arch: "x86_64", Version: "10.2", Commit: rels[1].Commit}); err != nil {
		t.Fatalf("offer at threshold: %v", err)
	}
}
