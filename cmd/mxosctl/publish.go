package main

import (
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

func newPublishCmd(r *remote) *cobra.Command {
	var (
		data, keys, ref, version, subject, body string
		ownerUID, ownerGID                      int
		noXattrs, skipSpecial, verbose, quiet   bool
		channelName, arch, work, ramp           string
		image                                   bool
		imageHost                               string
		modeExceptions, channelsDir             string
	)
	cmd := &cobra.Command{
		Use:   "publish (--data DIR --ref REF | --channel C) --keys KEYDIR --version V SOURCE",
		Short: "Publish a tree as a signed commit on a ref or a server's channel",
		Long: `Publish reads SOURCE (a directory, a .tar, .tar.gz or .tar.zst file, or
ostree:REPO_PATH:REF), stores it in DIR/repo, makes a commit with the version,
the ref binding and a newer timestamp, signs it with the keys in KEYDIR, moves
the ref and rewrites the signed summary.

With --channel, it publishes to the running server named by --server and
--token instead: the commit is built in a local work repository (--work),
signed here with KEYDIR (the key never leaves this machine), only the objects
the server lacks are uploaded, and the server moves the channel and starts
its default rollout (--ramp to choose another, or "none").

With --image, the same tree is also made a bootable OCI image, signed with
the ed25519 release key and tagged CHANNEL and CHANNEL-VERSION in the
registry repository mxos/MAJOR/ARCH: in DIR/oci locally, or pushed to the
server's registry with --channel (its digest goes into the signed channel
metadata). Clients verify it with the key "mxosctl image-key" prints.

A channel reached by promotion (promotes_from, e.g. stable) is never
published to: releases reach it with mxosctl promote. Locally, the channel
definitions in --channels (default ./channels when it exists, as for
mxos-server) say which refs those are.

The publish policy refuses a tree with a world-readable or world-writable
etc/shadow, etc/gshadow (also under usr/etc, and their "-" backups) or a
world-writable setuid or setgid file, naming each. Intended exceptions go
in a file given with --allow-mode-exceptions: one path in the tree per line
(/etc/shadow or etc/shadow), # comments and blank lines ignored.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			allow, err := release.LoadModeExceptions(modeExceptions)
			if err != nil {
				return err
			}
			if channelName != "" {
				if ref != "" || cmd.Flags().Changed("data") {
					return userError("use --channel (server) or --data and --ref (local), not both")
				}
				if err := checkPublishable(cmd, r, channelName); err != nil {
					return err
				}
				opts := ostree.CommitOptions{NoXattrs: noXattrs, SkipSpecial: skipSpecial}
				return specialHint(publishRemote(cmd, r, remotePublish{channel: channelName, arch: arch, version: version, keys: keys,
					work: work, ramp: ramp, subject: subject, body: body, source: args[0], opts: opts, quiet: quiet,
					image: image, imageHost: imageHost, modeExceptions: allow}))
			}
			if ref == "" || version == "" {
				return userError("--ref and --version are required (or --channel to publish to a server)")
			}
			if keys == "" {
				return userError("--keys is required: the directory with the signing keys")
			}
			deltas, err := checkLocalRef(channelsDir, ref)
			if err != nil {
				return err
			}
			signers, err := sign.LoadSigners(keys)
			if err != nil {
				return err
			}
			var step *release.ImageStep
			if image {
				// Before anything is published: a bad ref or a missing key stops here.
				if _, _, _, err := imagename.RepositoryForRef(ref); err != nil {
					return i18n.Errorf("--image: %w", err)
				}
				if step, err = localImageStep(data, keys, imageHost); err != nil {
					return err
				}
			}
			repo, err := ostree.Create(repoDir(data))
			if err != nil {
				return err
			}
			opts := ostree.CommitOptions{NoXattrs: noXattrs, SkipSpecial: skipSpecial}
			if ownerUID >= 0 {
				u := uint32(ownerUID)
				opts.OwnerUID = &u
			}
			if ownerGID >= 0 {
				g := uint32(ownerGID)
				opts.OwnerGID = &g
			}
			bar := newProgress(os.Stderr, quiet)
			opts.Progress = bar.update
			p := &release.Publisher{Repo: repo, Signers: signers, Log: newLogger(verbose),
				Deltas: &release.DeltaPolicy{Sources: deltas.Sources, Scratch: deltas.Scratch}}
			start := time.Now()
			res, err := p.Publish(cmd.Context(), release.Request{
				Ref: ref, Version: version, Subject: subject, Body: body, Source: args[0], Options: opts,
				ModeExceptions: allow,
			})
			bar.done()
			if err != nil {
				return specialHint(err)
			}
			say(cmd.OutOrStdout(), "Published %s %s as commit %s (%s).", ref, version, res.Commit, time.Since(start).Round(time.Millisecond))
			if step == nil {
				return nil
			}
			im, err := step.Build(cmd.Context(), repo, ref, version, res.Commit)
			if err == nil {
				err = step.Tag(cmd.Context(), im, ref, version)
			}
			if err != nil {
				return i18n.Errorf("the commit is published, but its image is not: %w", err)
			}
			say(cmd.OutOrStdout(), "Image %s@%s, signed.", im.Repository, im.Digest)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", envOr("MXOS_DATA", "./mxos-data"), "data directory (env MXOS_DATA)")
	f.StringVar(&keys, "keys", envOr("MXOS_KEYS", ""), "directory with the signing keys (env MXOS_KEYS)")
	f.StringVar(&ref, "ref", "", "ref to publish on, e.g. mxos/10/x86_64/testing")
	f.StringVar(&version, "version", "", "release version, e.g. 10.0.1")
	f.StringVar(&subject, "subject", "", "commit subject (default: MxOS VERSION)")
	f.StringVar(&body, "body", "", "commit body (release notes)")
	f.IntVar(&ownerUID, "owner-uid", -1, "make every file owned by this uid")
	f.IntVar(&ownerGID, "owner-gid", -1, "make every file owned by this gid")
	f.BoolVar(&noXattrs, "no-xattrs", false, "do not store extended attributes")
	f.BoolVar(&skipSpecial, "skip-special", false, "leave out device nodes, FIFOs and sockets instead of failing")
	f.StringVar(&channelName, "channel", "", "publish to this channel of the server (--server, --token)")
	f.StringVar(&arch, "arch", defaultArch(), "architecture of the tree, with --channel")
	f.StringVar(&work, "work", defaultWork(), "local work repository for --channel publishing")
	f.StringVar(&ramp, "ramp", "", `rollout plan with --channel (default: the channel's; "none" for no rollout)`)
	f.BoolVar(&image, "image", false, "also publish the tree as a signed bootable OCI image")
	f.StringVar(&imageHost, "image-host", "", "registry host[:port] clients pull images from, named in signatures (default: the server's)")
	f.StringVar(&modeExceptions, "allow-mode-exceptions", "", "file of tree paths (one per line) the publish policy lets through")
	f.StringVar(&channelsDir, "channels", envOr("MXOS_CHANNELS", ""), "channel definitions for local publishing (env MXOS_CHANNELS; default ./channels when it exists)")
	f.BoolVarP(&verbose, "verbose", "v", false, "show detailed logs")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress output")
	return cmd
}

// checkPublishable refuses, before anything is built or uploaded, a
// publish to a server channel that is reached only by promotion; the
// server refuses it too.
func checkPublishable(cmd *cobra.Command, r *remote, name string) error {
	c, err := r.client(cmd)
	if err != nil {
		return err
	}
	chans, err := c.Channels(cmd.Context())
	if err != nil {
		return r.explain(err)
	}
	for _, ch := range chans {
		if ch.Name == name && ch.PromotesFrom != "" {
			return release.PromotionOnlyError(name, ch.PromotesFrom)
		}
	}
	return nil // an unknown channel is reported when its ref is looked up
}

// checkLocalRef refuses a local publish to the ref of a channel reached
// only by promotion, according to the channel definitions in dir (or
// ./channels when it exists; none found: nothing to check). It returns
// the channel's static delta policy: its static_deltas (or
// channel.DefaultStaticDeltas) and static_delta_from_scratch.
func checkLocalRef(dir, ref string) (release.DeltaPolicy, error) {
	def := release.DeltaPolicy{Sources: channel.DefaultStaticDeltas}
	flag := "--channels"
	if dir == "" {
		st, err := os.Stat("channels")
		if err != nil || !st.IsDir() {
			return def, nil
		}
		dir, flag = "channels", "./channels"
	}
	set, err := channel.LoadDir(dir)
	if err != nil {
		return def, i18n.Errorf("loading channel definitions (%s): %w", flag, err)
	}
	for _, ch := range set.Channels() {
		for _, arch := range ch.Arches() {
			if r, _ := ch.Ref(arch); r == ref {
				if ch.PromotesFrom != "" {
					return def, release.PromotionOnlyError(ch.Name, ch.PromotesFrom)
				}
				return release.DeltaPolicy{Sources: ch.DeltaSources(), Scratch: ch.StaticDeltaFromScratch}, nil
			}
		}
	}
	return def, nil
}

// specialHint says what to do when the tree holds a device node, FIFO or
// socket, which OSTree cannot store.
func specialHint(err error) error {
	var se *ostree.SpecialFileError
	if errors.As(err, &se) {
		return i18n.Errorf("%w (publish with --skip-special to leave device nodes, FIFOs and sockets out; the booted system makes its own /dev)", err)
	}
	return err
}
