package pull

import (
	"context"
	"errors"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// TestPullKeyRoles: the summary is checked with the online keys and the
// commit with the release keys, never the other way round. The fixture's
// "other" key plays the server's online key: it signs the summary here,
// as mxos-server --online-keys does.
func TestPullKeyRoles(t *testing.T) {
	f := getFixture(t)
	online, onlineV := f.otherSign, f.other
	_, sumBytes, err := f.repo.ReadSummary()
	if err != nil {
		t.Fatal(err)
	}
	commit, err := f.repo.ReadMetadata(f.stableC, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	onlineSummary := map[string][]byte{"summary": sumBytes, "summary.sig": marshalSig(t, online, sumBytes)}
	onlineCommit := map[string][]byte{
		"summary": sumBytes, "summary.sig": marshalSig(t, online, sumBytes),
		ostree.ObjectPath(f.stableC, ostree.ObjCommitMeta): marshalSig(t, online, commit),
	}
	for _, tc := range []struct {
		name   string
		files  map[string][]byte
		opts   Options
		oneSet []sign.Verifier // Puller.Verifiers
		want   error           // nil: the pull succeeds
	}{
		{name: "roles split", files: onlineSummary, opts: Options{SummaryKeys: onlineV, CommitKeys: f.verifiers}},
		// Failure 1 of issue 9: one key set for both cannot read a
		// summary the online key signed.
		{name: "release keys for both", files: onlineSummary, oneSet: f.verifiers, want: ErrBadSignature},
		// A stolen online key signs a commit: it counts for nothing.
		{name: "commit signed only by the online key", files: onlineCommit,
			opts: Options{SummaryKeys: onlineV, CommitKeys: f.verifiers}, want: ErrBadSignature},
		{name: "online keys for commits too", files: onlineCommit,
			opts: Options{SummaryKeys: onlineV, CommitKeys: onlineV}, want: nil},
		{name: "release-signed summary, online keys expected", files: nil,
			opts: Options{SummaryKeys: onlineV, CommitKeys: f.verifiers}, want: ErrBadSignature},
		{name: "no commit keys", files: onlineSummary, opts: Options{SummaryKeys: onlineV, CommitKeys: []sign.Verifier{}},
			want: sign.ErrNoKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, url := f.serve(t, overlay(tc.files))
			dst := newDst(t)
			p := f.puller(url)
			p.Verifiers = tc.oneSet
			c, err := p.Pull(context.Background(), dst, stable, tc.opts)
			refs, _ := dst.ListRefs()
			if tc.want == nil {
				if err != nil || c != f.stableC || refs[stable] != f.stableC {
					t.Fatalf("pull: %s %v, refs %v", c, err, refs)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if len(refs) != 0 {
				t.Errorf("refs after a refused pull: %v", refs)
			}
			t.Logf("refused: %v", err)
		})
	}
}
