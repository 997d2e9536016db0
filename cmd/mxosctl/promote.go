package main

import (
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

var _ release.Server = (*client.Client)(nil)

// defaultArch names this machine's architecture the way channel refs do.
func defaultArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// defaultWork is the local repository remote publishing builds in; it is
// a cache: deleting it only costs time.
func defaultWork() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(".", ".mxos-work")
	}
	return filepath.Join(dir, "mxos-update", "repo")
}

// channelRef finds the ref the server's channel uses for arch.
func channelRef(cmd *cobra.Command, c *client.Client, channel, arch string) (string, error) {
	chans, err := c.Channels(cmd.Context())
	if err != nil {
		return "", err
	}
	for _, ch := range chans {
		if ch.Name != channel {
			continue
		}
		for _, a := range ch.Arches {
			if a.Arch == arch {
				return a.Ref, nil
			}
		}
		return "", api.Errorf(api.CodeUnknownArch, "channel %s has no %s", channel, arch)
	}
	return "", api.Errorf(api.CodeUnknownChannel, "the server has no channel %q", channel)
}

type remotePublish struct {
	channel, arch, version, keys, work, ramp, subject, body, source string
	opts                                                            ostree.CommitOptions
	quiet                                                           bool
	image                                                           bool
	imageHost                                                       string
	modeExceptions                                                  release.ModeExceptions
}

func remoteSetup(cmd *cobra.Command, r *remote, keys, work string) (*client.Client, *release.Remote, error) {
	if keys == "" {
		return nil, nil, userError("--keys is required: the directory with the release key")
	}
	signers, err := sign.LoadSigners(keys)
	if err != nil {
		return nil, nil, err
	}
	// The same ed25519 release key signs the channel metadata's targets.
	metaSigners, err := publish.LoadEd25519Signers(keys)
	if err != nil {
		return nil, nil, i18n.Errorf("release key for signed channel metadata: %w", err)
	}
	c, err := r.client(cmd)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(work), 0o755); err != nil {
		return nil, nil, err
	}
	repo, err := ostree.Create(work)
	if err != nil {
		return nil, nil, err
	}
	return c, &release.Remote{Server: c, Work: repo, Signers: signers, MetaSigners: metaSigners}, nil
}

func publishRemote(cmd *cobra.Command, r *remote, p remotePublish) error {
	if p.version == "" {
		return userError("--version is required")
	}
	c, rem, err := remoteSetup(cmd, r, p.keys, p.work)
	if err != nil {
		return err
	}
	ref, err := channelRef(cmd, c, p.channel, p.arch)
	if err != nil {
		return r.explain(err)
	}
	bar := newProgress(os.Stderr, p.quiet)
	p.opts.Progress = bar.update
	rem.Progress = func(done, total int) { bar.count(done, total) }
	if p.image {
		if rem.Image, err = r.imageStep(cmd, rem.MetaSigners, p.imageHost); err != nil {
			return err
		}
	}
	rel, sum, err := rem.Publish(cmd.Context(), release.RemoteRequest{Channel: p.channel, Arch: p.arch, Ref: ref,
		Version: p.version, Subject: p.subject, Body: p.body, Source: p.source, Options: p.opts, Ramp: p.ramp,
		ModeExceptions: p.modeExceptions})
	bar.done()
	if err != nil {
		return r.explain(err)
	}
	say(cmd.OutOrStdout(), "Published %s %s on %s as commit %s.", rel.Channel, rel.Version, rel.Arch, sum)
	printImage(cmd, rem)
	return nil
}

// printImage reports the image a publish or promote made.
func printImage(cmd *cobra.Command, rem *release.Remote) {
	if rem.Image != nil && rem.Image.Image != nil {
		im := rem.Image.Image
		say(cmd.OutOrStdout(), "Image %s/%s@%s, signed.", rem.Image.Host, im.Repository, im.Digest)
	}
}

func newPromoteCmd(r *remote) *cobra.Command {
	var from, to, version, arch, keys, work, ramp, imageHost, signOnly string
	var image bool
	var threshold int
	cmd := &cobra.Command{
		Use:   "promote --from C --to C --version V --keys KEYDIR",
		Short: "Promote a release to the next channel",
		Long: `Promote makes a new commit for channel --to with the same root tree as
release --version of channel --from, binds it to --to's ref, signs it here
with KEYDIR and asks the server to publish it. Nothing but the commit is
uploaded. Each channel can only be promoted from its own source (stable
from testing, edu from stable).

A channel with "threshold: 2" needs two release team members: the first
runs promote --sign-only FILE (the commit is uploaded, nothing is
published), the second runs mxosctl release cosign FILE with their key,
which adds their signatures and submits it.

With --image, the image of the release on --from (tag FROM-VERSION) is
fetched from the server's registry, its signature checked with the release
key, and a new config naming the promoted commit is pushed and signed; the
layers are reused, nothing else is uploaded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" || version == "" {
				return userError("--from, --to and --version are required")
			}
			c, rem, err := remoteSetup(cmd, r, keys, work)
			if err != nil {
				return err
			}
			ref, err := channelRef(cmd, c, to, arch)
			if err != nil {
				return r.explain(err)
			}
			if signOnly != "" {
				if image {
					return userError("--sign-only does not work with --image yet: promote the image after the release")
				}
				return promoteSignOnly(cmd, rem, signOnly, threshold, func() error {
					_, _, err := rem.Promote(cmd.Context(), from, to, arch, ref, version, ramp)
					return err
				})
			}
			if image {
				if rem.Image, err = r.imageStep(cmd, rem.MetaSigners, imageHost); err != nil {
					return err
				}
			}
			rel, sum, err := rem.Promote(cmd.Context(), from, to, arch, ref, version, ramp)
			if err != nil {
				return r.explain(err)
			}
			say(cmd.OutOrStdout(), "Promoted %s from %s to %s on %s as commit %s.", rel.Version, from, to, rel.Arch, sum)
			printImage(cmd, rem)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "channel the release is on, e.g. testing")
	f.StringVar(&to, "to", "", "channel to promote to, e.g. stable")
	f.StringVar(&version, "version", "", "release version")
	f.StringVar(&arch, "arch", defaultArch(), "architecture")
	f.StringVar(&keys, "keys", envOr("MXOS_KEYS", ""), "directory with the release key (env MXOS_KEYS)")
	f.StringVar(&work, "work", defaultWork(), "local work repository")
	f.StringVar(&ramp, "ramp", "", `rollout plan (default: the channel's; "none" for no rollout)`)
	f.BoolVar(&image, "image", false, "also promote the release's signed bootable OCI image")
	f.StringVar(&signOnly, "sign-only", "", "sign the promotion here and write it to this file for more release signatures (mxosctl release cosign) instead of submitting it")
	f.IntVar(&threshold, "threshold", 2, "with --sign-only: release signatures the promotion will carry (the channel's threshold)")
	f.StringVar(&imageHost, "image-host", "", "registry host[:port] clients pull images from, named in signatures (default: the server's)")
	return cmd
}
