package main

// mxosctl image import and export: bootable images between any
// containers/image transport and the server's registry (see package
// internal/oci/imageio for the policy and transport details).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	sigsig "github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/oci/imageio"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/regclient"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// imageFlags are the flags import and export share.
type imageFlags struct {
	channel, version, major, arch, keys string
	insecurePolicy, quiet, tlsVerify    bool
}

func (f *imageFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.channel, "channel", "", "channel, e.g. testing")
	fl.StringVar(&f.version, "version", "", "release version, e.g. 10.0.1")
	fl.StringVar(&f.major, "major", "", "MxOS major version (default: from the server's channel ref)")
	fl.StringVar(&f.arch, "arch", defaultArch(), "architecture")
	fl.StringVar(&f.keys, "keys", envOr("MXOS_KEYS", ""), "directory with the release key (env MXOS_KEYS)")
	fl.BoolVar(&f.insecurePolicy, "insecure-policy", false, "accept the source image without a signature check")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress output")
	fl.BoolVar(&f.tlsVerify, "tls-verify", true, "verify the registry's TLS certificate (http:// servers use plain HTTP)")
}

// imageSession is what one image command needs: the registry, the
// repository of --major/--arch, and a private directory for
// containers/image.
type imageSession struct {
	reg   imageio.Registry
	repo  string // mxos/<major>/<arch>
	token string
	dir   string
	ca    string // --ca-file
}

func newImageSession(cmd *cobra.Command, r *remote, f *imageFlags) (*imageSession, func(), error) {
	reg, err := imageio.RegistryFromServer(r.server)
	if err != nil {
		return nil, nil, userError("check --server or MXOS_SERVER: %v", err)
	}
	token := r.token
	if !cmd.Flags().Changed("token") {
		token = os.Getenv("MXOS_TOKEN")
	}
	if !f.tlsVerify {
		reg.Insecure = true
	}
	s := &imageSession{reg: reg, token: strings.TrimSpace(token), ca: r.caFile}
	if _, err := imagename.OCIArch(f.arch); err != nil {
		return nil, nil, userError("--arch: %v", err)
	}
	major := f.major
	if major == "" {
		repo, err := serverRepository(cmd, r, f.channel, f.arch)
		if err != nil {
			return nil, nil, err
		}
		s.repo = repo
	} else {
		repo, _, _, err := imagename.RepositoryForRef("mxos/" + major + "/" + f.arch + "/x")
		if err != nil {
			return nil, nil, userError("--major %q: %v", major, err)
		}
		s.repo = repo
	}
	dir, err := os.MkdirTemp("", "mxosctl-image-")
	if err != nil {
		return nil, nil, err
	}
	s.dir = dir
	return s, func() { os.RemoveAll(dir) }, nil
}

// serverRepository is mxos/<major>/<arch> from the server's channel refs:
// channel's, or the one all channels share for arch.
func serverRepository(cmd *cobra.Command, r *remote, channelName, arch string) (string, error) {
	c, err := r.client(cmd)
	if err != nil {
		return "", err
	}
	if channelName != "" {
		ref, err := channelRef(cmd, c, channelName, arch)
		if err != nil {
			return "", r.explain(err)
		}
		repo, _, _, err := imagename.RepositoryForRef(ref)
		return repo, err
	}
	chans, err := c.Channels(cmd.Context())
	if err != nil {
		return "", r.explain(err)
	}
	repos := map[string]bool{}
	for _, ch := range chans {
		for _, a := range ch.Arches {
			if repo, _, _, err := imagename.RepositoryForRef(a.Ref); err == nil && a.Arch == arch {
				repos[repo] = true
			}
		}
	}
	if len(repos) != 1 {
		return "", userError("cannot tell the MxOS major version from the server's channels: use --major")
	}
	for repo := range repos {
		return repo, nil
	}
	return "", nil
}

func (s *imageSession) context(ours bool) (*types.SystemContext, error) {
	o := imageio.ContextOptions{Dir: filepath.Join(s.dir, "local")}
	if ours {
		o = imageio.ContextOptions{Registry: s.reg, Token: s.token, Dir: filepath.Join(s.dir, "registry"), CAFile: s.ca}
	}
	return imageio.SystemContext(o)
}

// releaseKeys reads the public release keys of dir as PEM blocks.
func releaseKeys(dir string) ([][]byte, error) {
	if dir == "" {
		return nil, userError("--keys is required: the directory with the release key (or --insecure-policy)")
	}
	b, err := os.ReadFile(filepath.Join(dir, sign.Ed25519PublicFile))
	if err != nil {
		return nil, i18n.Errorf("release public key: %w", err)
	}
	pubs, err := publish.Ed25519PublicKeys(b)
	if err != nil {
		return nil, i18n.Errorf("release public key: %w", err)
	}
	var pems [][]byte
	for _, p := range pubs {
		pem, err := ocisig.PublicKeyPEM(p)
		if err != nil {
			return nil, err
		}
		pems = append(pems, pem)
	}
	return pems, nil
}

// releaseSigner is the image signing key of dir: the ed25519 release key
// publish --image signs with.
func releaseSigner(dir string) (sigsig.Signer, error) {
	if dir == "" {
		return nil, userError("--keys is required: the directory with the release key that signs the image")
	}
	signers, err := publish.LoadEd25519Signers(dir)
	if err != nil {
		return nil, i18n.Errorf("release key: %w", err)
	}
	return imageSigner(signers)
}

// report is where containers/image draws its progress bars: stderr on
// a terminal, nowhere otherwise (like the other commands' progress).
func report(quiet bool) io.Writer {
	if !newProgress(os.Stderr, quiet).on {
		return nil
	}
	return os.Stderr
}

func newImageCmd(r *remote) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Import and export bootable images"}
	cmd.AddCommand(newImageImportCmd(r), newImageExportCmd(r))
	return cmd
}

func newImageImportCmd(r *remote) *cobra.Command {
	var f imageFlags
	var policyFile string
	cmd := &cobra.Command{
		Use:   "import SRC --channel C --version V --keys KEYDIR",
		Short: "Copy an image into the server's registry and sign it",
		Long: `Import copies SRC (docker://, oci:, oci-archive:, dir:, docker-archive:)
into the server's registry as mxos/<major>/<arch>, tagged C and C-V, and
signs it there with the release key in KEYDIR (a sigstore signature, which
devices, podman, bootc and cosign verify).

SRC must pass a signature policy: by default only images of this registry
signed with the release key; --policy FILE uses a containers-policy.json;
--insecure-policy accepts SRC without a check (images built elsewhere are
often unsigned: the signature devices trust is the one made here).

A channel that gets releases by promotion only (stable, edu) refuses
imports. The server records each import in the audit log (image.import)
and, when version V is published on C for the architecture and has no
image yet, records the image as that release's (a release is a signed
OSTree commit: an image of a version not published is offered to no
device). publish --image makes a release with its image, promote --image
moves both.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.channel == "" || f.version == "" {
				return userError("--channel and --version are required")
			}
			if policyFile != "" && f.insecurePolicy {
				return userError("use --policy or --insecure-policy, not both")
			}
			// stable and edu get releases by promotion only, images too
			// (mxosctl promote --image tags them there).
			if err := checkPublishable(cmd, r, f.channel); err != nil {
				return err
			}
			src, err := imageio.ParseReference(args[0])
			if err != nil {
				return err
			}
			key, err := releaseSigner(f.keys)
			if err != nil {
				return err
			}
			s, done, err := newImageSession(cmd, r, &f)
			if err != nil {
				return err
			}
			defer done()
			var policy *signature.Policy
			switch {
			case policyFile != "":
				if policy, err = signature.NewPolicyFromFile(policyFile); err != nil {
					return i18n.Errorf("--policy: %w", err)
				}
			case f.insecurePolicy:
				policy = imageio.RejectAll()
				imageio.AllowUnsigned(policy, src)
			default:
				pk, err := key.PublicKey()
				if err != nil {
					return err
				}
				pub, err := ocisig.PublicKeyPEM(pk)
				if err != nil {
					return err
				}
				if policy, err = imageio.Policy(imageio.PolicyOptions{Scope: s.reg.Scope("mxos"), Keys: [][]byte{pub}}); err != nil {
					return err
				}
			}
			tags := imagename.Tags(f.channel, f.version)
			dst, err := s.reg.Reference(s.repo, tags[1])
			if err != nil {
				return err
			}
			ours := src.DockerReference() != nil && reference.Domain(src.DockerReference()) == s.reg.Host
			srcCtx, err := s.context(ours)
			if err != nil {
				return err
			}
			dstCtx, err := s.context(true)
			if err != nil {
				return err
			}
			d, err := imageio.Copy(cmd.Context(), policy, src, dst, imageio.CopyOptions{SourceCtx: srcCtx, DestCtx: dstCtx,
				Report: report(f.quiet), RemoveSignatures: true})
			if err != nil {
				if imageio.IsPolicyDenied(err) && !f.insecurePolicy && policyFile == "" {
					return i18n.Errorf("%w (the source is not signed with the release key; use --insecure-policy or --policy FILE for images from elsewhere)", err)
				}
				return r.explainImage(err)
			}
			rc, err := regclient.New(r.server, s.token)
			if err != nil {
				return err
			}
			if err := tagImage(cmd.Context(), rc, s.repo, d, tags[0]); err != nil {
				return r.explainImage(err)
			}
			ref, err := imageio.DockerReference(dst)
			if err != nil {
				return err
			}
			if err := ocisig.Sign(cmd.Context(), rc, s.repo, d, ref, key); err != nil {
				return r.explainImage(err)
			}
			say(cmd.OutOrStdout(), "Imported %s as %s/%s:%s and :%s (%s), signed.",
				imageio.Name(src), s.reg.Host, s.repo, tags[1], tags[0], d)
			// The server records the import in the audit log, and the
			// image as the release's when that version is published.
			ac, err := r.client(cmd)
			if err != nil {
				return err
			}
			rec, err := ac.ImageImported(cmd.Context(), api.ImageImportRequest{Channel: f.channel, Arch: f.arch, Version: f.version,
				Digest: d.String(), Source: imageio.Name(src)})
			if err != nil {
				return r.explain(err)
			}
			if rec.Release != nil {
				say(cmd.OutOrStdout(), "Recorded as the image of release %s (%s) on %s.", f.version, f.arch, f.channel)
			} else {
				say(cmd.OutOrStdout(), "Recorded in the audit log. %s is not a release of %s (%s) yet: devices are offered its image once it is published (mxosctl publish).", f.version, f.channel, f.arch)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&policyFile, "policy", "", "containers-policy.json the source must satisfy")
	return cmd
}

// tagImage points tag at the manifest d.
func tagImage(ctx context.Context, rc *regclient.Client, repo string, d fmt.Stringer, tag string) error {
	mt, body, _, err := rc.GetManifest(ctx, repo, d.String())
	if err != nil {
		return i18n.Errorf("reading %s: %w", d, err)
	}
	if _, err := rc.PutManifest(ctx, repo, tag, mt, body); err != nil {
		return i18n.Errorf("tagging %s: %w", tag, err)
	}
	return nil
}

func newImageExportCmd(r *remote) *cobra.Command {
	var f imageFlags
	cmd := &cobra.Command{
		Use:   "export (--channel C | --version V | both) --keys KEYDIR DEST",
		Short: "Copy a signed image from the server's registry",
		Long: `Export copies the image of channel C (its current release), or of release V
(with --channel, tag C-V; alone, the one tag ending in -V), from the server's
registry to DEST (oci:, oci-archive:, dir:, docker://...), for example to a
USB disk. The image's signature is checked against the release public key
in KEYDIR first, unless --insecure-policy. Digests are preserved.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.channel == "" && f.version == "" {
				return userError("--channel or --version is required")
			}
			dst, err := imageio.ParseReference(args[0])
			if err != nil {
				return err
			}
			var keys [][]byte
			if !f.insecurePolicy {
				if keys, err = releaseKeys(f.keys); err != nil {
					return err
				}
			}
			s, done, err := newImageSession(cmd, r, &f)
			if err != nil {
				return err
			}
			defer done()
			tag, err := exportTag(cmd.Context(), r, s, &f)
			if err != nil {
				return err
			}
			src, err := s.reg.Reference(s.repo, tag)
			if err != nil {
				return err
			}
			policy := imageio.RejectAll()
			if f.insecurePolicy {
				imageio.AllowUnsigned(policy, src)
			} else if policy, err = imageio.Policy(imageio.PolicyOptions{Scope: s.reg.Scope("mxos"), Keys: keys}); err != nil {
				return err
			}
			srcCtx, err := s.context(true)
			if err != nil {
				return err
			}
			dstCtx, err := s.context(false)
			if err != nil {
				return err
			}
			d, err := imageio.Copy(cmd.Context(), policy, src, dst, imageio.CopyOptions{SourceCtx: srcCtx, DestCtx: dstCtx,
				Report: report(f.quiet), RemoveSignatures: !imageio.KeepsSignatures(dst), PreserveDigests: true})
			if err != nil {
				return r.explainImage(err)
			}
			say(cmd.OutOrStdout(), "Exported %s/%s:%s (%s) to %s.", s.reg.Host, s.repo, tag, d, imageio.Name(dst))
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

// exportTag picks the tag: C, C-V, or the only tag ending in -V.
func exportTag(ctx context.Context, r *remote, s *imageSession, f *imageFlags) (string, error) {
	switch {
	case f.version == "":
		return f.channel, nil
	case f.channel != "":
		return imagename.Tags(f.channel, f.version)[1], nil
	}
	rc, err := regclient.New(r.server, s.token)
	if err != nil {
		return "", err
	}
	tags, err := rc.ListTags(ctx, s.repo)
	if err != nil {
		return "", r.explainImage(err)
	}
	suffix := imagename.Tags("x", f.version)[1][1:] // "-<version>", cleaned as tags are
	var found []string
	for _, t := range tags {
		if strings.HasSuffix(t, suffix) && !strings.HasSuffix(t, ".sig") {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", i18n.Errorf("no image of version %s in %s", f.version, s.repo)
	}
	return "", userError("version %s is in several channels (%s): add --channel", f.version, strings.Join(found, ", "))
}

// explainImage adds a hint to registry errors people can fix.
func (r *remote) explainImage(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unauthorized") && !r.hasToken && os.Getenv("MXOS_TOKEN") == "" && r.token == "":
		return i18n.Errorf("%w; set MXOS_TOKEN or use --token (a token with the release role)", err)
	case errors.Is(err, context.Canceled):
		return err
	}
	return r.explain(err)
}
