package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
)

// deltas compares the size of our static deltas (internal/ostree/delta,
// as publishing makes them) with `ostree static-delta generate` on the
// same pair of commits in the same repository, and with the bytes a
// loose-object pull of the same update transfers: for the update from
// release 1 to release 2 (the devpull pair) and from scratch.

var partDeltas = part{name: "deltas", needs: []string{"ostree"}, run: runDeltas}

// Targets of the delta sizes (issue 12): ≤ 1.0x libostree's delta, ≤ 0.2x
// the loose objects of the update.
const (
	deltaOstreeTarget = 1.0
	deltaLooseTarget  = 0.2
)

func newDeltasCmd(o *options, argv []string) *cobra.Command {
	return &cobra.Command{
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
	logf(b.stderr, "deltas: publishing releases 1 and 2")
	c1s, err := b.publishVersion(ctx, data, src1.path, "1")
	if err != nil {
		return err
	}
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
	peer := "ostree static-delta generate " + b.report.Machine.Ostree
	for _, tc := range []struct {
		label string
		id    ostree.DeltaID
		args  []string
	}{
		{"update 1→2", ostree.DeltaID{From: c1, To: c2}, []string{"--from=" + c1s, "--to=" + c2s}},
		{"from scratch", ostree.DeltaID{To: c2}, []string{"--empty", "--to=" + c2s}},
	} {
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
	b.report.Notes = append(b.report.Notes,
		deltasPairNote(b.o.tree2, src1.desc, src2.desc),
		"deltas: bytes are the superblock plus every part file; loose objects are the stored .commit, .commitmeta, .dirtree, .dirmeta and .filez files a loose pull of the same update fetches. "+
			"Ours sends a changed file as ranges of the old one plus new bytes (no bsdiff); ostree's generator uses rollsum and bsdiff. Generation time: ours in-process, ostree as a command.")
	return nil
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
