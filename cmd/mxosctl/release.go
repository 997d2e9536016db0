package main

// k-of-n release signatures: promote --sign-only writes a partly signed
// promotion, release cosign adds signatures and submits it.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/commitsig"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// partialRelease is the file promote --sign-only writes: the release
// request as it would be submitted, with the signatures made so far.
type partialRelease struct {
	Format  string             `json:"format"`
	Request api.ReleaseRequest `json:"request"`
}

const partialFormat = "mxos-partial-release-1"

// maxPartialFile bounds a partial release file (targets up to 5 MB,
// base64-encoded).
const maxPartialFile = 16 << 20

var errSignedOnly = errors.New("signed only")

// captureServer passes everything to the real server except the final
// PublishRelease, which it records.
type captureServer struct {
	release.Server
	req *api.ReleaseRequest
}

func (c *captureServer) PublishRelease(_ context.Context, req api.ReleaseRequest) (api.Release, error) {
	c.req = &req
	return api.Release{}, errSignedOnly
}

// promoteSignOnly runs promote against a server that records instead of
// publishing, and writes the partly signed request to path.
func promoteSignOnly(cmd *cobra.Command, rem *release.Remote, path string, threshold int, promote func() error) error {
	if threshold < 2 {
		return userError("--threshold must be at least 2 with --sign-only")
	}
	cs := &captureServer{Server: rem.Server}
	rem.Server = cs
	rem.Threshold = threshold
	if err := promote(); !errors.Is(err, errSignedOnly) {
		if err == nil {
			err = errors.New("the promotion was not submitted for signing")
		}
		return err
	}
	if len(cs.req.Targets) == 0 {
		return userError("the server publishes no signed channel metadata: k-of-n release signatures need it")
	}
	data, err := json.MarshalIndent(partialRelease{Format: partialFormat, Request: *cs.req}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileDurable(path, append(data, '\n')); err != nil {
		return err
	}
	say(cmd.OutOrStdout(), "Signed the promotion of %s to %s on %s (1 of %d release signatures) into %s.\n"+
		"Another release team member adds theirs and submits it: mxosctl release cosign %s --keys DIR",
		cs.req.Version, cs.req.Channel, cs.req.Arch, threshold, path, path)
	return nil
}

func newReleaseCmd(r *remote) *cobra.Command {
	cmd := &cobra.Command{Use: "release", Short: "Work on partly signed releases (k-of-n release signatures)"}
	var keys string
	cosign := &cobra.Command{
		Use:   "cosign FILE --keys DIR",
		Short: "Add your release signatures to a partly signed promotion and submit it",
		Long: `Cosign reads a promotion written by mxosctl promote --sign-only, checks it
(the commit on the server matches it, it is bound to its channel, and the
signed targets list exactly it and are already signed by another release
key of the signed root), adds the signatures of the release key in DIR to
the commit and the targets, and submits it when enough keys have signed.
Otherwise it writes the file back for the next signer.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cosignRelease(cmd, r, args[0], keys)
		},
	}
	cosign.Flags().StringVar(&keys, "keys", envOr("MXOS_KEYS", ""), "directory with your release key (env MXOS_KEYS)")
	cmd.AddCommand(cosign)
	return cmd
}

func cosignRelease(cmd *cobra.Command, r *remote, path, keys string) error {
	if keys == "" {
		return userError("--keys is required: the directory with your release key")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxPartialFile+1))
	f.Close()
	if err != nil {
		return err
	}
	if len(raw) > maxPartialFile {
		return i18n.Errorf("%s: larger than %d bytes", path, maxPartialFile)
	}
	var p partialRelease
	if err := json.Unmarshal(raw, &p); err != nil || p.Format != partialFormat {
		return i18n.Errorf("%s is not a partly signed release (from mxosctl promote --sign-only)", path)
	}
	req := p.Request
	signers, err := sign.LoadSigners(keys)
	if err != nil {
		return err
	}
	metaSigners, err := publish.LoadEd25519Signers(keys)
	if err != nil {
		return err
	}
	c, err := r.client(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()

	// What is being signed: the commit, as stored on the server.
	sum, err := ostree.ParseChecksum(req.Commit)
	if err != nil {
		return i18n.Errorf("%s: %w", path, err)
	}
	cb, err := c.RepoObject(ctx, ostree.ObjectPath(sum, ostree.ObjCommit))
	if err != nil {
		return r.explain(i18n.Errorf("reading commit %s: %w", req.Commit, err))
	}
	if got := sha256.Sum256(cb); !bytes.Equal(got[:], sum[:]) {
		return i18n.Errorf("the server's commit does not match %s", req.Commit)
	}
	cm, err := ostree.ParseCommit(cb)
	if err != nil {
		return err
	}
	if cm.Version() != req.Version {
		return i18n.Errorf("commit %s carries version %q, the request says %q", req.Commit, cm.Version(), req.Version)
	}
	root, err := c.Metadata(ctx, "root.json")
	if err != nil || root == nil {
		return r.explain(i18n.Errorf("reading the server's signed root: %v", err))
	}
	rels, err := publish.VerifyTargets(root, req.Targets)
	if err != nil {
		return i18n.Errorf("the partly signed targets: %w", err)
	}
	var rec *channelmeta.Release
	for i := range rels {
		if rels[i].Channel == req.Channel && rels[i].Arch == req.Arch && rels[i].Version == req.Version {
			rec = &rels[i]
		}
	}
	if rec == nil || rec.Commit != req.Commit {
		return i18n.Errorf("the partly signed targets do not list commit %s as %s %s on %s", req.Commit, req.Version, req.Arch, req.Channel)
	}
	bound := false
	for _, b := range cm.RefBindings() {
		bound = bound || b == rec.Ref
	}
	if !bound {
		return i18n.Errorf("commit %s is not bound to %s", req.Commit, rec.Ref)
	}

	// Add our signatures to the commit and to the targets.
	md, err := ostree.ParseMetadata(req.Commitmeta)
	if err != nil {
		return i18n.Errorf("%s: commit signatures: %w", path, err)
	}
	if md, err = commitsig.Sign(signers, cb, md); err != nil {
		return err
	}
	if req.Commitmeta, err = ostree.MarshalMetadata(md); err != nil {
		return err
	}
	var n int
	if req.Targets, n, err = publish.CosignTargets(root, req.Targets, metaSigners); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	need := max(rec.Threshold, 1)
	if n < need {
		p.Request = req
		data, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileDurable(path, append(data, '\n')); err != nil {
			return err
		}
		say(out, "Signed (%d of %d release signatures); pass %s to the next release team member.", n, need, path)
		return nil
	}
	rel, err := c.PublishRelease(ctx, req)
	if err != nil {
		return r.explain(err)
	}
	say(out, "Promoted %s to %s on %s with %d release signatures (commit %s).", rel.Version, rel.Channel, rel.Arch, n, req.Commit)
	return nil
}

// writeFileDurable writes path as temp file, fsync, rename, fsync of the
// directory.
func writeFileDurable(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
