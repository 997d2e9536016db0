package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// deltas compares the size of our static deltas (internal/ostree/delta,
// as publishing makes them) with `ostree static-delta generate` on the
// same pair of commits in the same repository, and with the bytes a
// loose-object pull of the same update transfers: for the update from
// release 1 to release 2 (the devpull pair) and from scratch. It then
// times applying the update delta: the device puller on our delta against
// `ostree pull --require-static-deltas` on ostree's delta of the same pair
// (and stock ostree on ours), alternating rounds, CPU beside wall time.

var partDeltas = part{name: "deltas", needs: []string{"ostree"}, run: runDeltas}

// Targets of the delta sizes (issue 12): ≤ 1.0x libostree's delta, ≤ 0.2x
// the loose objects of the update.
const (
	deltaOstreeTarget = 1.0
	deltaLooseTarget  = 0.2
	// deltaApplyTarget: our puller applying our delta against stock
	// ostree applying its own, wall time.
	deltaApplyTarget = 1.0
)

func newDeltasCmd(o *options, argv []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deltas",
		Short: "our static deltas vs ostree static-delta generate and vs loose objects: bytes and time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.quick {
				for name, val := range devpullDefaults {
					if f := cmd.Flags().Lookup(name); f != nil && !f.Changed {
						if err := f.Value.Set(val); err != nil {
							return fmt.Errorf("setting --%s: %w", name, err)
						}
					}
				}
			}
			return runBench(cmd, *o, commandLine(argv), []part{partDeltas})
		},
	}
	cmd.Flags().BoolVar(&o.noScratch, "no-scratch", false, "skip the delta from scratch (its generation takes minutes on a real tree)")
	return cmd
}

func runDeltas(ctx context.Context, b *bench) error {
	srcs, err := b.publishSources(ctx, false)
	if err != nil {
		return err
	}
	src1 := srcs[0]
	var src2 publishSource
	if b.o.tree2 != "" {
		p, err := filepath.Abs(b.o.tree2)
		if err != nil {
			return fmt.Errorf("--tree2: %w", err)
		}
		src2 = publishSource{kind: "tree2", path: p, desc: p}
	} else if src2, err = b.nextRelease(ctx, src1); err != nil {
		return err
	}
	data, err := b.scratchDir("deltas-server")
	if err != nil {
		return err
	}
	logf(b.stderr, "deltas: publishing release 1")
	c1s, err := b.publishVersion(ctx, data, src1.path, "1")
	if err != nil {
		return err
	}
	// Each client's repository holding release 1, pulled by that client
	// (not timed); every apply round starts from a copy of it.
	seeds, err := b.deltaSeeds(ctx, data, c1s)
	if err != nil {
		return err
	}
	logf(b.stderr, "deltas: publishing release 2")
	c2s, err := b.publishVersion(ctx, data, src2.path, "2")
	if err != nil {
		return err
	}
	repoDir := filepath.Join(data, "repo")
	repo, err := ostree.Open(repoDir)
	if err != nil {
		return err
	}
	c1, _ := ostree.ParseChecksum(c1s)
	c2, _ := ostree.ParseChecksum(c2s)
	update := ostree.DeltaID{From: c1, To: c2}
	peer := "ostree static-delta generate " + b.report.Machine.Ostree
	var stockUpdate string // ostree's update delta (superblock and parts)
	cases := []struct {
		label string
		id    ostree.DeltaID
		args  []string
	}{
		{"update 1→2", update, []string{"--from=" + c1s, "--to=" + c2s}},
		{"from scratch", ostree.DeltaID{To: c2}, []string{"--empty", "--to=" + c2s}},
	}
	if b.o.noScratch {
		cases = cases[:1]
	}
	for _, tc := range cases {
		logf(b.stderr, "deltas: %s: ours", tc.label)
		start := time.Now()
		if err := delta.Generate(ctx, repo, tc.id, time.Now()); err != nil {
			return err
		}
		oursTime := time.Since(start).Seconds()
		ours, err := dirBytes(filepath.Join(repoDir, filepath.FromSlash(tc.id.Dir())))
		if err != nil {
			return err
		}
		out, err := b.scratchDir("deltas-ostree", filepath.Base(tc.id.Dir()))
		if err != nil {
			return err
		}
		if err := os.Mkdir(out, 0o755); err != nil {
			return err
		}
		logf(b.stderr, "deltas: %s: ostree", tc.label)
		args := append([]string{"--repo=" + repoDir, "static-delta", "generate", "--filename=" + filepath.Join(out, "superblock")}, tc.args...)
		res, err := runTimed(ctx, b.o.timeout, childEnviron(), b.o.ostree, args...)
		if err != nil {
			return fmt.Errorf("ostree static-delta generate: %w", err)
		}
		if tc.id == update {
			stockUpdate = out
		}
		theirs, err := dirBytes(out)
		if err != nil {
			return err
		}
		loose, err := looseBytes(repo, tc.id)
		if err != nil {
			return err
		}
		mb := func(n int64) []float64 { return []float64{float64(n) / 1e6} }
		looseTarget := 0.0
		if !tc.id.From.IsZero() {
			looseTarget = deltaLooseTarget
		}
		b.report.Rows = append(b.report.Rows,
			newRow("deltas", "delta "+tc.label+": bytes", "MB", peer, Lower, deltaOstreeTarget, mb(ours), mb(theirs)),
			newRow("deltas", "delta "+tc.label+" vs loose-object pull", "MB", "loose objects", Lower, looseTarget, mb(ours), mb(loose)),
			newRow("deltas", "delta "+tc.label+": generation", "seconds", peer, Lower, 0, []float64{oursTime}, []float64{res.wall.Seconds()}),
		)
		logf(b.stderr, "deltas: %s: ours %.2f MB in %.1f s, ostree %.2f MB in %.1f s, loose objects %.2f MB",
			tc.label, float64(ours)/1e6, oursTime, float64(theirs)/1e6, res.wall.Seconds(), float64(loose)/1e6)
	}
	if err := b.deltaApply(ctx, data, update, stockUpdate, seeds); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	b.report.Notes = append(b.report.Notes,
		deltasPairNote(b.o.tree2, src1.desc, src2.desc),
		"deltas: bytes are the superblock plus every part file; loose objects are the stored .commit, .commitmeta, .dirtree, .dirmeta and .filez files a loose pull of the same update fetches. "+
			"Ours sends a changed file, and a new one with a same-named file in release 1, as ranges of that file plus new bytes (no bsdiff), compressed by the system's xz when installed; ostree's generator uses rollsum and bsdiff. Generation time: ours in-process (with its xz child), ostree as a command.",
		"deltas: apply rows: the update 1→2 pulled from mxos-server on 127.0.0.1 into a copy of a repository holding release 1 (pulled by the same client), alternating rounds, medians. "+
			"Ours is the device puller (devpull-child --require-delta: it fails unless it applied the delta, every part and object checked) applying our delta; "+
			"the peer is `ostree pull --require-static-deltas` (gpg-verify=true, gpg-verify-summary=true) into a bare-user repository (ostree 2022.7 applies no delta into an archive one; ours writes an archive repository, compressing every file it makes) applying `ostree static-delta generate`'s delta of the same pair, served by a second mxos-server on a copy of the repository whose signed summary lists that delta instead. "+
			"The second pair of rows is stock ostree applying our delta against it applying its own. CPU is the client process's user + system time.")
	return nil
}

// deltaSeeds serves data (holding release 1 only) and lets each client
// pull c1 into a repository of its own.
func (b *bench) deltaSeeds(ctx context.Context, data, c1 string) (map[devpullSide]string, error) {
	srv, err := b.startDevpullServer(ctx, data, "deltas-r1")
	if err != nil {
		return nil, err
	}
	seeds := map[devpullSide]string{}
	for _, side := range []devpullSide{sideOurs, sideOstree} {
		dir, err := b.scratchDir("deltas-apply", "seed-"+string(side))
		if err != nil {
			return nil, err
		}
		if _, err := b.devpullOnce(ctx, srv, side, dir, c1, "", pullHow{bareUser: true}); err != nil {
			return nil, fmt.Errorf("seeding release 1: %w", err)
		}
		seeds[side] = dir
	}
	return seeds, stopServer(srv.httpServer)
}

// applyRun is one measured client: who pulls from which server.
type applyRun struct {
	name  string
	side  devpullSide
	stock bool // from the server whose summary lists ostree's delta
}

// deltaApply measures applying the update delta: our puller on our delta,
// stock ostree on its own delta and on ours. stock is the directory
// `ostree static-delta generate --filename` wrote ostree's delta into.
func (b *bench) deltaApply(ctx context.Context, data string, id ostree.DeltaID, stock string, seeds map[devpullSide]string) error {
	signers, err := sign.LoadSigners(b.keys)
	if err != nil {
		return err
	}
	signSummary := func(repoDir string) error {
		repo, err := ostree.Open(repoDir)
		if err != nil {
			return err
		}
		txn, err := repo.Begin()
		if err != nil {
			return err
		}
		defer txn.Close()
		if err := txn.WriteSummary(time.Now(), func(s []byte) (ostree.Metadata, error) { return release.SignData(signers, s, nil) }); err != nil {
			return err
		}
		return txn.Close()
	}
	// Ours: the summary lists the deltas just generated.
	if err := signSummary(filepath.Join(data, "repo")); err != nil {
		return err
	}
	// Stock: a copy of the repository with ostree's delta in place of ours.
	dataStock, err := b.scratchDir("deltas-server-stock")
	if err != nil {
		return err
	}
	stockRepo := filepath.Join(dataStock, "repo")
	if err := cloneRepo(filepath.Join(data, "repo"), stockRepo); err != nil {
		return err
	}
	dir := filepath.Join(stockRepo, filepath.FromSlash(id.Dir()))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.CopyFS(dir, os.DirFS(stock)); err != nil {
		return fmt.Errorf("placing ostree's delta: %w", err)
	}
	if err := signSummary(stockRepo); err != nil {
		return err
	}
	srvOurs, err := b.startDevpullServer(ctx, data, "deltas-ours")
	if err != nil {
		return err
	}
	srvStock, err := b.startDevpullServer(ctx, dataStock, "deltas-stock")
	if err != nil {
		return err
	}
	runs := []applyRun{{"ours", sideOurs, false}, {"ostree-own", sideOstree, true}, {"ostree-ours", sideOstree, false}}
	samples := map[string][]devpullSample{}
	for round := range b.o.rounds {
		order := slices.Clone(runs)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, r := range order {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("interrupted: %w", err)
			}
			out, err := b.scratchDir("deltas-apply", fmt.Sprintf("%s-%d", r.name, round))
			if err != nil {
				return err
			}
			srv := srvOurs
			if r.stock {
				srv = srvStock
			}
			s, err := b.devpullOnce(ctx, srv, r.side, out, id.To.String(), seeds[r.side], pullHow{requireDelta: true, bareUser: true})
			if err != nil {
				return err
			}
			logf(b.stderr, "deltas: apply round %d/%d %-11s %6.2f s, client CPU %.2f s, %d requests, %.2f MB sent",
				round+1, b.o.rounds, r.name, s.wall.Seconds(), s.clientCPU.Seconds(), s.Requests, float64(s.Bytes)/1e6)
			samples[r.name] = append(samples[r.name], s)
		}
	}
	pick := func(name string, f func(devpullSample) float64) []float64 {
		var out []float64
		for _, s := range samples[name] {
			out = append(out, f(s))
		}
		return out
	}
	wall := func(s devpullSample) float64 { return s.wall.Seconds() }
	cpu := func(s devpullSample) float64 { return s.clientCPU.Seconds() }
	sent := func(s devpullSample) float64 { return float64(s.Bytes) / 1e6 }
	peer := "ostree pull --require-static-deltas of ostree's delta " + b.report.Machine.Ostree
	b.report.Rows = append(b.report.Rows,
		newRow("deltas", "delta apply 1→2: our puller, our delta", "seconds", peer, Lower, deltaApplyTarget, pick("ours", wall), pick("ostree-own", wall)),
		newRow("deltas", "delta apply 1→2: our puller, client CPU", "cpu-seconds", peer, Lower, 0, pick("ours", cpu), pick("ostree-own", cpu)),
		newRow("deltas", "delta apply 1→2: our puller, bytes sent", "MB", peer, Lower, 0, pick("ours", sent), pick("ostree-own", sent)),
		newRow("deltas", "delta apply 1→2: ostree pull, our delta", "seconds", peer, Lower, 0, pick("ostree-ours", wall), pick("ostree-own", wall)),
		newRow("deltas", "delta apply 1→2: ostree pull of our delta, client CPU", "cpu-seconds", peer, Lower, 0, pick("ostree-ours", cpu), pick("ostree-own", cpu)),
	)
	return errors.Join(stopServer(srvOurs.httpServer), stopServer(srvStock.httpServer))
}

// dirBytes sums the sizes of the regular files in dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

// looseBytes is what a loose-object pull of id transfers: the target's
// commit, its detached metadata, and every object it reaches that From
// does not.
func looseBytes(repo *ostree.Repo, id ostree.DeltaID) (int64, error) {
	want, err := reachableSet(repo, id.To.String())
	if err != nil {
		return 0, err
	}
	have := map[ostree.ObjectRef]bool{}
	if !id.From.IsZero() {
		if have, err = reachableSet(repo, id.From.String()); err != nil {
			return 0, err
		}
	}
	want[ostree.ObjectRef{Checksum: id.To, Type: ostree.ObjCommitMeta}] = true
	var n int64
	for o := range want {
		if have[o] {
			continue
		}
		if fi, err := os.Stat(repo.ObjectFile(o.Checksum, o.Type)); err == nil {
			n += fi.Size()
		}
	}
	return n, nil
}

func deltasPairNote(tree2, desc1, desc2 string) string {
	if tree2 != "" {
		return fmt.Sprintf("deltas: release 1 is %s, release 2 is %s, both published with our publisher.", desc1, desc2)
	}
	return fmt.Sprintf("deltas: release 1 is %s; release 2 changes every 20th regular file and adds %d files (the devpull pair), both published with our publisher.", desc1, release2NewFiles)
}
