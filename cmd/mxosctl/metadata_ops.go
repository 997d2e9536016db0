package main

// The lifecycle of the signed channel metadata after init: status,
// renew, sign-existing and rotate-keys. Everything that needs an offline
// key is signed here, on the release team's machine; the server only
// verifies and installs (PUT /api/v1/metadata).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/commitsig"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// metaNow is the clock of the metadata commands (tests move it).
var metaNow = time.Now

func newMetadataStatusCmd(r *remote) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the version and expiry of every role of the signed channel metadata",
		Long: `Status reads the server's signed channel metadata (/metadata/) and prints the
version and expiry of each role. Root and targets are signed offline and
only the release team can renew them: status warns 30 days before either
expires (mxosctl metadata renew). The server renews the others itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			var st []publish.RoleStatus
			for _, role := range publish.Roles {
				data, err := c.Metadata(cmd.Context(), role+".json")
				if err != nil {
					return r.explain(err)
				}
				if data == nil {
					if role == "root" {
						return userError("the server publishes no signed channel metadata (see mxosctl metadata init)")
					}
					continue
				}
				rs, err := publish.RoleInfo(role, data)
				if err != nil {
					return i18n.Errorf("the server's %s.json: %w", role, err)
				}
				st = append(st, rs)
			}
			return printRoleStatus(cmd, st, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printRoleStatus prints roles as a table (or JSON) and a warning on
// stderr for each offline role that expires within 30 days.
func printRoleStatus(cmd *cobra.Command, st []publish.RoleStatus, asJSON bool) error {
	now := metaNow()
	out := cmd.OutOrStdout()
	if asJSON {
		if err := printJSON(out, nonNil(st)); err != nil {
			return err
		}
	} else {
		t := newTable(out, "ROLE", "VERSION", "EXPIRES", "IN")
		for _, rs := range st {
			t.row(rs.Role, strconv.FormatInt(rs.Version, 10), rs.Expires.UTC().Format(time.RFC3339), untilText(rs.Expires.Sub(now)))
		}
		t.flush()
	}
	warnExpiring(cmd, st, now)
	return nil
}

// warnExpiring prints one warning line per offline role near expiry.
func warnExpiring(cmd *cobra.Command, st []publish.RoleStatus, now time.Time) {
	for _, rs := range st {
		if rs.ExpiresSoon(now) {
			say(cmd.ErrOrStderr(), "Warning: signed %s (version %d) expires %s (%s); renew it: mxosctl metadata renew --%s --keys DIR",
				rs.Role, rs.Version, rs.Expires.UTC().Format(time.RFC3339), untilText(rs.Expires.Sub(now)), rs.Role)
		}
	}
}

func untilText(d time.Duration) string {
	if d < 0 {
		return "expired"
	}
	if d < 48*time.Hour {
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// trustedServerMeta reads the server's current root and targets and
// checks them with the keys at hand: the root must carry the signature of
// rootSigners (so a hostile server cannot slip its own keys into what we
// re-sign), and targets must verify under that root. It returns root,
// targets and the listed releases.
func trustedServerMeta(ctx context.Context, c *client.Client, rootSigners []signature.Signer) ([]byte, []byte, []channelmeta.Release, error) {
	root, err := c.Metadata(ctx, "root.json")
	if err != nil {
		return nil, nil, nil, err
	}
	targets, err := c.Metadata(ctx, "targets.json")
	if err != nil {
		return nil, nil, nil, err
	}
	if root == nil || targets == nil {
		return nil, nil, nil, userError("the server publishes no signed channel metadata (see mxosctl metadata init)")
	}
	if err := publish.VerifyRootSignedBy(root, rootSigners); err != nil {
		return nil, nil, nil, i18n.Errorf("the server's root.json: %w", err)
	}
	rels, err := publish.VerifyTargets(root, targets)
	if err != nil {
		return nil, nil, nil, i18n.Errorf("the server's targets.json: %w", err)
	}
	return root, targets, rels, nil
}

// putMetadata uploads u and prints done (translated) and the roles the
// server now serves.
func putMetadata(cmd *cobra.Command, r *remote, c *client.Client, u api.MetadataUpdate, done string) error {
	roles, err := c.PutMetadata(cmd.Context(), u)
	if err != nil {
		return r.explain(err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), done)
	st := make([]publish.RoleStatus, 0, len(roles))
	for _, rs := range roles {
		st = append(st, publish.RoleStatus{Role: rs.Role, Version: rs.Version, Expires: rs.Expires})
	}
	return printRoleStatus(cmd, st, false)
}

func loadMetaSigners(dir, flag string) ([]signature.Signer, error) {
	if dir == "" {
		return nil, userError("--%s is required", flag)
	}
	s, err := publish.LoadEd25519Signers(dir)
	if err != nil {
		return nil, i18n.Errorf("--%s: %w", flag, err)
	}
	return s, nil
}

func newMetadataRenewCmd(r *remote) *cobra.Command {
	var keys, rootKeys string
	var doRoot, doTargets bool
	cmd := &cobra.Command{
		Use:   "renew --keys DIR [--root] [--targets]",
		Short: "Re-sign root and/or targets with a new expiry (both when neither flag is given)",
		Long: `Renew re-signs the offline roles of the signed channel metadata with a new
expiry (root: 1 year, targets: 90 days) and the same keys and releases, and
installs them on the server. Root is signed with the root key (--root-keys,
by default the release key in --keys), targets with the release key. The
server and mxosctl warn 30 days before either expires.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !doRoot && !doTargets {
				doRoot, doTargets = true, true
			}
			if rootKeys == "" {
				rootKeys = keys
			}
			relSigners, err := loadMetaSigners(keys, "keys")
			if err != nil {
				return err
			}
			rootSigners, err := loadMetaSigners(rootKeys, "root-keys")
			if err != nil {
				return err
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			root, targets, rels, err := trustedServerMeta(cmd.Context(), c, rootSigners)
			if err != nil {
				return r.explain(err)
			}
			now := metaNow()
			var u api.MetadataUpdate
			if doRoot {
				k, err := publish.RootKeys(root)
				if err != nil {
					return err
				}
				if root, err = publish.RotateRoot(root, k, rootSigners, publish.Options{}, now); err != nil {
					return i18n.Errorf("renewing root: %w", err)
				}
				u.Root = root
			}
			if doTargets {
				if u.Targets, err = publish.BuildTargets(root, targets, rels, relSigners, publish.Options{}, now); err != nil {
					return i18n.Errorf("renewing targets: %w", err)
				}
			}
			return putMetadata(cmd, r, c, u, msg.T("Renewed the signed channel metadata."))
		},
	}
	f := cmd.Flags()
	f.StringVar(&keys, "keys", envOr("MXOS_KEYS", ""), "directory with the release key (env MXOS_KEYS)")
	f.StringVar(&rootKeys, "root-keys", "", "directory with the root key (default: --keys)")
	f.BoolVar(&doRoot, "root", false, "renew root")
	f.BoolVar(&doTargets, "targets", false, "renew targets")
	return cmd
}

func newMetadataSignExistingCmd(r *remote) *cobra.Command {
	var keys string
	cmd := &cobra.Command{
		Use:   "sign-existing --keys DIR",
		Short: "Sign into targets the releases published before signed metadata was on",
		Long: `Sign-existing lists every release the server has, checks each one that the
signed targets do not list yet (its commit must carry a valid signature of
the release key in --keys, be bound to its ref and carry its version) and
signs them all into the next targets. Devices install only releases the
targets list, so until then they are offered nothing older than the first
release published with metadata on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			signers, err := loadMetaSigners(keys, "keys")
			if err != nil {
				return err
			}
			verifiers, err := sign.LoadVerifiers(keys)
			if err != nil {
				return i18n.Errorf("--keys: %w", err)
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			root, targets, rels, err := trustedServerMeta(ctx, c, signers)
			if err != nil {
				return r.explain(err)
			}
			listed := map[string]bool{}
			for _, rel := range rels {
				listed[rel.Path()] = true
			}
			channels, err := c.Channels(ctx)
			if err != nil {
				return r.explain(err)
			}
			var added []channelmeta.Release
			for _, ch := range channels {
				for _, a := range ch.Arches {
					list, err := c.Releases(ctx, ch.Name, a.Arch)
					if err != nil {
						return r.explain(err)
					}
					for _, ar := range list {
						rec := channelmeta.Release{Channel: ar.Channel, Arch: ar.Arch, Version: ar.Version, Ref: ar.Ref,
							Commit: ar.Commit, OCIDigest: ar.OCIDigest, PublishedAt: ar.PublishedAt}
						if listed[rec.Path()] {
							continue
						}
						if err := checkReleaseCommit(ctx, c, verifiers, rec); err != nil {
							return i18n.Errorf("release %s: %w", rec.Path(), err)
						}
						listed[rec.Path()] = true
						added = append(added, rec)
					}
				}
			}
			out := cmd.OutOrStdout()
			if len(added) == 0 {
				say(out, "All %d releases are already in the signed targets.", len(rels))
				return nil
			}
			for _, rec := range added {
				say(out, "Signing %s %s on %s (commit %s)", rec.Version, rec.Arch, rec.Channel, rec.Commit[:12])
			}
			data, err := publish.BuildTargets(root, targets, append(rels, added...), signers, publish.Options{}, metaNow())
			if err != nil {
				return i18n.Errorf("signing targets: %w", err)
			}
			return putMetadata(cmd, r, c, api.MetadataUpdate{Targets: data}, msg.T("Signed %d existing releases into the targets.", len(added)))
		},
	}
	cmd.Flags().StringVar(&keys, "keys", envOr("MXOS_KEYS", ""), "directory with the release key (env MXOS_KEYS)")
	return cmd
}

// checkReleaseCommit fetches rec's commit and its signatures from the
// server and checks them: the release key must have signed it, and it
// must be bound to rec's ref and carry rec's version. Only then is the
// release worth the release key's signature in targets.
func checkReleaseCommit(ctx context.Context, c *client.Client, verifiers []sign.Verifier, rec channelmeta.Release) error {
	sum, err := ostree.ParseChecksum(rec.Commit)
	if err != nil {
		return err
	}
	cb, err := c.RepoObject(ctx, ostree.ObjectPath(sum, ostree.ObjCommit))
	if err != nil {
		return i18n.Errorf("reading its commit: %w", err)
	}
	if got := sha256.Sum256(cb); !bytes.Equal(got[:], sum[:]) {
		return i18n.Errorf("the server's commit object does not match its checksum %s", rec.Commit)
	}
	mb, err := c.RepoObject(ctx, ostree.ObjectPath(sum, ostree.ObjCommitMeta))
	if err != nil {
		return i18n.Errorf("reading its signatures: %w", err)
	}
	md, err := ostree.ParseMetadata(mb)
	if err != nil {
		return i18n.Errorf("its signatures: %w", err)
	}
	if err := commitsig.Verifier(verifiers)(sum, cb, md); err != nil {
		return i18n.Errorf("not signed by the release key: %w", err)
	}
	cm, err := ostree.ParseCommit(cb)
	if err != nil {
		return err
	}
	bound := false
	for _, b := range cm.RefBindings() {
		bound = bound || b == rec.Ref
	}
	if !bound {
		return i18n.Errorf("its commit is bound to %v, not to %s", cm.RefBindings(), rec.Ref)
	}
	if v := cm.Version(); v != rec.Version {
		return i18n.Errorf("its commit carries version %q, not %q", v, rec.Version)
	}
	return nil
}

func newMetadataRotateCmd(r *remote) *cobra.Command {
	var keys, newKeys, newOnline string
	var addRelease []string
	cmd := &cobra.Command{
		Use:   "rotate-keys --keys DIR [--new-keys DIR] [--new-online-pub DIR] [--add-release-pub DIR]...",
		Short: "Replace the release/root key or the online key through a cross-signed root",
		Long: `Rotate-keys writes the next root naming the new key(s), signed by the old
and the new root keys, re-signs the targets for it and installs both on
the server. Devices follow: they accept a root only when a threshold of
the root keys they trust signed it, and from then on refuse the old key.

--new-keys DIR replaces the release key (which is also the root key) with
the ed25519 key in DIR (mxosctl keys generate). New commits and images are
signed with it from then on, so ship its public key in the devices'
trusted_keys before using it for commits.

--add-release-pub DIR adds another release team member's public key
(ed25519.pub in DIR) to the release keys, for channels that need k of n
release signatures (threshold: in the channel file).

--new-online-pub DIR replaces the server's online key. The server must
already hold the new key: put both keys in its online ed25519.secret (one
per line) and restart it, rotate, then remove the old one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if newKeys == "" && newOnline == "" && len(addRelease) == 0 {
				return userError("nothing to rotate: give --new-keys, --new-online-pub or --add-release-pub")
			}
			oldSigners, err := loadMetaSigners(keys, "keys")
			if err != nil {
				return err
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			root, targets, rels, err := trustedServerMeta(cmd.Context(), c, oldSigners)
			if err != nil {
				return r.explain(err)
			}
			k, err := publish.RootKeys(root)
			if err != nil {
				return err
			}
			rootSigners, relSigners := oldSigners, oldSigners
			if newKeys != "" {
				ns, err := loadMetaSigners(newKeys, "new-keys")
				if err != nil {
					return err
				}
				pubs, err := publish.PublicKeys(ns...)
				if err != nil {
					return err
				}
				k.Root = publish.RoleKeys{Keys: pubs, Threshold: 1}
				k.Release = publish.RoleKeys{Keys: pubs, Threshold: 1}
				rootSigners = append(append([]signature.Signer{}, oldSigners...), ns...)
				relSigners = ns
			}
			for _, dir := range addRelease {
				pubFile, err := os.ReadFile(filepath.Join(dir, sign.Ed25519PublicFile))
				if err != nil {
					return i18n.Errorf("--add-release-pub: %w", err)
				}
				pubs, err := publish.Ed25519PublicKeys(pubFile)
				if err != nil {
					return i18n.Errorf("--add-release-pub: %w", err)
				}
				k.Release.Keys = append(k.Release.Keys, pubs...)
			}
			if newOnline != "" {
				pubFile, err := os.ReadFile(filepath.Join(newOnline, sign.Ed25519PublicFile))
				if err != nil {
					return i18n.Errorf("--new-online-pub: %w", err)
				}
				pubs, err := publish.Ed25519PublicKeys(pubFile)
				if err != nil {
					return i18n.Errorf("--new-online-pub: %w", err)
				}
				k.Online = publish.RoleKeys{Keys: pubs, Threshold: 1}
			}
			now := metaNow()
			next, err := publish.RotateRoot(root, k, rootSigners, publish.Options{}, now)
			if err != nil {
				return i18n.Errorf("rotating root: %w", err)
			}
			nt, err := publish.BuildTargets(next, targets, rels, relSigners, publish.Options{}, now)
			if err != nil {
				return i18n.Errorf("re-signing targets for the new root: %w", err)
			}
			return putMetadata(cmd, r, c, api.MetadataUpdate{Root: next, Targets: nt},
				msg.T("Rotated the keys of the signed channel metadata. Devices follow the new root; ship the server's /metadata/root.json in the next OS image."))
		},
	}
	f := cmd.Flags()
	f.StringVar(&keys, "keys", envOr("MXOS_KEYS", ""), "directory with the current release/root key (env MXOS_KEYS)")
	f.StringVar(&newKeys, "new-keys", "", "directory with the new release/root key")
	f.StringVar(&newOnline, "new-online-pub", "", "directory with the new online public key (ed25519.pub)")
	f.StringArrayVar(&addRelease, "add-release-pub", nil, "directory with another release team member's public key (ed25519.pub); repeatable")
	return cmd
}
