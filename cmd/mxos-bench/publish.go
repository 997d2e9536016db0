package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// publishSource is one tree both tools commit.
type publishSource struct {
	kind string // "dir" or "tar"
	path string
	desc string
}

// publishSources returns what to publish: --tree as given, or the
// generated tree as a directory and (with withTar) as a tarball.
func (b *bench) publishSources(ctx context.Context, withTar bool) ([]publishSource, error) {
	if b.o.tree != "" {
		p, err := filepath.Abs(b.o.tree)
		if err != nil {
			return nil, fmt.Errorf("--tree: %w", err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("--tree: %w", err)
		}
		if fi.IsDir() {
			return []publishSource{{kind: "dir", path: p, desc: filepath.Base(p)}}, nil
		}
		return []publishSource{{kind: "tar", path: p, desc: fmt.Sprintf("%s, %.0f MB", filepath.Base(p), float64(fi.Size())/1e6)}}, nil
	}
	spec := treeSpec{Files: b.o.files, Size: int64(b.o.size), Seed: b.o.seed}
	tree := filepath.Join(b.work, "gen", spec.key())
	if err := os.MkdirAll(filepath.Dir(tree), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Dir(tree), err)
	}
	logf(b.stderr, "publish: generating the tree (%d files, %s)", spec.Files, formatSize(spec.Size))
	st, reused, err := cached(tree, func(tmp string) (treeStats, error) { return generateTree(tmp, spec) })
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	logf(b.stderr, "publish: tree %s (%s)", st, reusedWord(reused))
	desc := fmt.Sprintf("%d files, %.0f MB", st.Files+st.Symlinks+st.Hardlinks, float64(st.Bytes)/1e6)
	b.report.Notes = append(b.report.Notes, fmt.Sprintf("publish: generated tree (seed %d): %s.", spec.Seed, st))
	srcs := []publishSource{{kind: "dir", path: tree, desc: desc}}
	if withTar {
		tarPath := tree + ".tar"
		if _, _, err := cached(tarPath, func(tmp string) (treeStats, error) { return st, writeTar(tree, tmp) }); err != nil {
			return nil, err
		}
		srcs = append(srcs, publishSource{kind: "tar", path: tarPath, desc: desc})
	}
	return srcs, nil
}

// runPublish times our publish against ostree commit of the same trees,
// each into a fresh repository, alternating, and compares repository sizes
// and root trees.
func runPublish(ctx context.Context, b *bench) error {
	srcs, err := b.publishSources(ctx, b.o.tar)
	if err != nil {
		return err
	}
	peerName := "ostree commit " + b.report.Machine.Ostree
	for _, src := range srcs {
		logf(b.stderr, "publish %s: warm-up read of %s", src.kind, src.path)
		if _, err := readTree(src.path); err != nil {
			return err
		}
		var oursT, peerT, oursCPU, peerCPU, oursSize, peerSize, oursRSS, peerRSS []float64
		var oursRoot, peerRoot string
		var oursObjects, peerObjects int
		for round := range b.o.rounds {
			sides := []string{"ours", "ostree"}
			if round%2 == 1 {
				sides = []string{"ostree", "ours"}
			}
			for _, side := range sides {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("interrupted: %w", err)
				}
				dir, err := b.scratchDir("publish", fmt.Sprintf("%s-%s-%d", src.kind, side, round))
				if err != nil {
					return err
				}
				var res runResult
				var repo string
				if side == "ours" {
					repo = filepath.Join(dir, "repo")
					res, err = b.timeOurPublish(ctx, dir, src, round)
				} else {
					repo = dir
					res, err = b.timeOstreeCommit(ctx, repo, src)
				}
				if err != nil {
					return err
				}
				size, files, err := diskUsage(repo)
				if err != nil {
					return err
				}
				root, err := rootTree(repo)
				if err != nil {
					return fmt.Errorf("%s commit: %w", side, err)
				}
				logf(b.stderr, "publish %s: round %d/%d %-6s %.2f s (cpu %.2f s, peak RSS %.1f MB), repo %.1f MB, %d objects",
					src.kind, round+1, b.o.rounds, side, res.wall.Seconds(), res.cpu.Seconds(), float64(res.maxRSS)/1e6, float64(size)/1e6, files)
				if side == "ours" {
					oursT = append(oursT, res.wall.Seconds())
					oursCPU = append(oursCPU, res.cpu.Seconds())
					oursRSS = append(oursRSS, float64(res.maxRSS)/1e6)
					oursSize = append(oursSize, float64(size)/1e6)
					oursRoot, oursObjects = root, files
					// The last directory publish is what pull serves;
					// other repositories go at once to spare the disk.
					if round == b.o.rounds-1 && (b.published == nil || src.kind == "dir") {
						commit, err := readRefFile(filepath.Join(repo, "refs", "heads", benchRef))
						if err != nil {
							return err
						}
						if old := b.published; old != nil {
							if err := removeAll(old.data, b.o.keep); err != nil {
								return err
							}
						}
						b.published = &publishedRepo{data: dir, ref: benchRef, commit: commit, desc: src.desc}
					} else if err := removeAll(dir, b.o.keep); err != nil {
						return err
					}
				} else {
					peerT = append(peerT, res.wall.Seconds())
					peerCPU = append(peerCPU, res.cpu.Seconds())
					peerRSS = append(peerRSS, float64(res.maxRSS)/1e6)
					peerSize = append(peerSize, float64(size)/1e6)
					peerRoot, peerObjects = root, files
					if err := removeAll(dir, b.o.keep); err != nil {
						return err
					}
				}
				syncFS()
			}
		}
		name := fmt.Sprintf("publish %s (%s)", src.kind, src.desc)
		b.report.Rows = append(b.report.Rows,
			newRow("publish", name, "seconds", peerName, Lower, 0.5, oursT, peerT),
			newRow("publish", fmt.Sprintf("publish %s: CPU time", src.kind), "cpu-seconds", peerName, Lower, 0, oursCPU, peerCPU),
			newRow("publish", fmt.Sprintf("publish %s: peak RSS", src.kind), "MB", peerName, Lower, 1.5, oursRSS, peerRSS),
			newRow("publish", fmt.Sprintf("publish %s: repository size", src.kind), "MB on disk", peerName, Lower, 0, oursSize, peerSize),
		)
		same := "the same root tree"
		if oursRoot != peerRoot {
			same = "DIFFERENT root trees"
		}
		b.report.Notes = append(b.report.Notes, fmt.Sprintf(
			"publish %s: ours and ostree commit made %s (ours %s, ostree %s); files in the repository: ours %d, ostree %d.",
			src.kind, same, oursRoot, peerRoot, oursObjects, peerObjects))
	}
	b.report.Notes = append(b.report.Notes,
		"publish: ours is the `mxosctl publish` binary (commit, ed25519 + OpenPGP signatures, ref, signed summary); "+
			"ostree is `ostree commit` alone (no signature, no summary); each run into a fresh repository, after a sync.")
	return nil
}

// timeOurPublish runs `mxosctl publish` (--mxosctl, or built from this
// module) into data/repo, in data so that no ./channels of the caller's
// directory applies; with --cpuprofile, this binary's publish-child (the
// same library calls) instead, to profile it.
func (b *bench) timeOurPublish(ctx context.Context, data string, src publishSource, round int) (runResult, error) {
	args := []string{"--data", data, "--keys", b.keys, "--ref", benchRef, "--version", "1"}
	var exe string
	if b.o.cpuProfile == "" {
		var err error
		if exe, err = b.ourBinary(ctx, "mxosctl", b.o.mxosctl); err != nil {
			return runResult{}, err
		}
		args = append(append([]string{"publish"}, args...), "--quiet", src.path)
	} else {
		exe = b.exe
		args = append([]string{"publish-child"}, args...)
		args = append(args, "--cpuprofile", filepath.Join(b.o.cpuProfile, fmt.Sprintf("publish-%s-%d.pprof", src.kind, round)))
		args = append(args, src.path)
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return runResult{}, fmt.Errorf("creating %s: %w", data, err)
	}
	syncFS()
	return runTimedIn(ctx, data, b.o.timeout, childEnviron(), exe, args...)
}

// timeOstreeCommit initialises an archive repository (not timed) and times
// ostree commit of src into it.
func (b *bench) timeOstreeCommit(ctx context.Context, repo string, src publishSource) (runResult, error) {
	if _, err := runTimed(ctx, b.o.timeout, childEnviron(), b.o.ostree, "--repo="+repo, "init", "--mode=archive"); err != nil {
		return runResult{}, err
	}
	syncFS()
	return runTimed(ctx, b.o.timeout, childEnviron(), b.o.ostree, "--repo="+repo, "commit",
		"--branch="+benchRef, "--tree="+src.kind+"="+src.path)
}

// rootTree returns "dirtree/dirmeta" (abbreviated) of the bench ref's
// commit in an archive repository written by either tool.
func rootTree(repoDir string) (string, error) {
	c, err := readRefFile(filepath.Join(repoDir, "refs", "heads", benchRef))
	if err != nil {
		return "", err
	}
	sum, err := ostree.ParseChecksum(c)
	if err != nil {
		return "", fmt.Errorf("ref %s: %w", benchRef, err)
	}
	repo, err := ostree.Open(repoDir)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", repoDir, err)
	}
	cm, err := repo.ReadCommit(sum)
	if err != nil {
		return "", fmt.Errorf("reading commit %s: %w", c, err)
	}
	return cm.RootTree.String()[:12] + "/" + cm.RootMeta.String()[:12], nil
}

// readRefFile reads a ref file's checksum.
func readRefFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading ref: %w", err)
	}
	c := strings.TrimSpace(string(b))
	if _, err := ostree.ParseChecksum(c); err != nil {
		return "", fmt.Errorf("ref %s: %w", p, err)
	}
	return c, nil
}
