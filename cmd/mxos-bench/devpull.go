package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// devpull compares the device's pure-Go pull (internal/ostree/pull, run as
// mxos-updater runs it) with stock `ostree pull` of the same commit from
// the same mxos-server, cold (into an empty repository) and as an update
// (the repository holds the previous release). The server child counts
// what it sends: requests and body bytes (from its own per-request log
// records, without encoding them) and, as a cross-check that includes
// headers, the bytes its process wrote (/proc/PID/io wchar, which counts
// sendfile too).

var partDevpull = part{name: "devpull", needs: []string{"ostree"}, run: runDevpull}

// devpullDefaults are the generated tree's size when neither --tree nor
// --files/--size are given: the shape of the Debian minbase tree.
var devpullDefaults = map[string]string{"files": "6750", "size": "206MB"}

// Targets of the device pull against stock ostree pull.
const (
	devpullTimeTarget  = 0.8
	devpullBytesTarget = 1.0
)

// newDevpullCmd is the devpull subcommand. Its generated tree defaults to
// the Debian minbase shape instead of the publish benchmark's size.
func newDevpullCmd(o *options, argv []string) *cobra.Command {
	return &cobra.Command{
		Use:   "devpull",
		Short: "our device pull vs ostree pull of the same commits from our server: time, bytes, requests",
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
			return runBench(cmd, *o, commandLine(argv), []part{partDevpull})
		},
	}
}

// devpullSide is one client: ours or stock ostree.
type devpullSide string

const (
	sideOurs   devpullSide = "ours"
	sideOstree devpullSide = "ostree"
)

// devpullSample is what one measured pull cost.
type devpullSample struct {
	wall, clientCPU, serverCPU time.Duration
	serverStats
}

// serverStats are the counters of the devpull server child.
type serverStats struct {
	Requests int64            `json:"requests"`
	Bytes    int64            `json:"bytes"`      // response bodies
	Wire     int64            `json:"wire_bytes"` // wchar of the server process
	Status   map[string]int64 `json:"status"`
}

func (s serverStats) sub(o serverStats) serverStats {
	d := serverStats{Requests: s.Requests - o.Requests, Bytes: s.Bytes - o.Bytes, Wire: s.Wire - o.Wire, Status: map[string]int64{}}
	for k, v := range s.Status {
		if n := v - o.Status[k]; n != 0 {
			d.Status[k] = n
		}
	}
	return d
}

// devpullServer is the running server child and its stats address.
type devpullServer struct {
	*httpServer
	stats string
}

func runDevpull(ctx context.Context, b *bench) error {
	srcs, err := b.publishSources(ctx, false)
	if err != nil {
		return err
	}
	src1 := srcs[0]
	src2, err := b.nextRelease(ctx, src1)
	if err != nil {
		return err
	}
	data, err := b.scratchDir("devpull-server")
	if err != nil {
		return err
	}
	logf(b.stderr, "devpull: publishing release 1 (%s)", src1.path)
	c1, err := b.publishVersion(ctx, data, src1.path, "1")
	if err != nil {
		return err
	}

	// Seed repositories holding release 1, one per client, pulled by that
	// client (not timed); every warm round starts from a copy of its seed.
	srv, err := b.startDevpullServer(ctx, data, "r1")
	if err != nil {
		return err
	}
	seeds := map[devpullSide]string{}
	for _, side := range []devpullSide{sideOurs, sideOstree} {
		dir, err := b.scratchDir("devpull", "seed-"+string(side))
		if err != nil {
			return err
		}
		if _, err := b.devpullOnce(ctx, srv, side, dir, c1, "", pullHow{}); err != nil {
			return fmt.Errorf("seeding release 1: %w", err)
		}
		seeds[side] = dir
	}
	if err := stopServer(srv.httpServer); err != nil {
		return err
	}

	logf(b.stderr, "devpull: publishing release 2 (%s)", src2.path)
	c2, err := b.publishVersion(ctx, data, src2.path, "2")
	if err != nil {
		return err
	}
	repo, err := ostree.Open(filepath.Join(data, "repo"))
	if err != nil {
		return err
	}
	n1, sz1, err := reachable(repo, c1)
	if err != nil {
		return err
	}
	n2, sz2, err := reachable(repo, c2)
	if err != nil {
		return err
	}
	srv, err = b.startDevpullServer(ctx, data, "r2")
	if err != nil {
		return err
	}

	type key struct {
		warm bool
		side devpullSide
	}
	samples := map[key][]devpullSample{}
	for round := range b.o.rounds {
		order := []devpullSide{sideOurs, sideOstree}
		if round%2 == 1 {
			order = []devpullSide{sideOstree, sideOurs}
		}
		for _, warm := range []bool{false, true} {
			for _, side := range order {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("interrupted: %w", err)
				}
				label := fmt.Sprintf("%s-%s-%d", side, map[bool]string{false: "cold", true: "warm"}[warm], round)
				dir, err := b.scratchDir("devpull", label)
				if err != nil {
					return err
				}
				seed := ""
				if warm {
					seed = seeds[side]
				}
				s, err := b.devpullOnce(ctx, srv, side, dir, c2, seed, pullHow{})
				if err != nil {
					return err
				}
				logf(b.stderr, "devpull: round %d/%d %-5s %-6s %6.2f s, %4d requests, %7.1f MB (wire %.1f MB), client CPU %.2f s, server CPU %.2f s, status %v",
					round+1, b.o.rounds, map[bool]string{false: "cold", true: "warm"}[warm], side, s.wall.Seconds(), s.Requests,
					float64(s.Bytes)/1e6, float64(s.Wire)/1e6, s.clientCPU.Seconds(), s.serverCPU.Seconds(), s.Status)
				samples[key{warm, side}] = append(samples[key{warm, side}], s)
				// Repositories stay until the end: ext4 skips inodes freed
				// in the last 30 s when it allocates new ones, so deleting
				// thousands of files here would slow the next pull's
				// file creation by an amount that depends on luck.
			}
		}
	}
	peer := "ostree pull " + b.report.Machine.Ostree
	pick := func(warm bool, side devpullSide, f func(devpullSample) float64) []float64 {
		var out []float64
		for _, s := range samples[key{warm, side}] {
			out = append(out, f(s))
		}
		return out
	}
	for _, warm := range []bool{false, true} {
		name := fmt.Sprintf("devpull cold (%d objects, %.0f MB)", n2, float64(sz2)/1e6)
		short := "devpull cold"
		if warm {
			name = fmt.Sprintf("devpull update from release 1 (%d new objects)", newObjects(repo, c1, c2))
			short = "devpull update"
		}
		row := func(n, unit string, dir Direction, target float64, f func(devpullSample) float64) Row {
			return newRow("devpull", n, unit, peer, dir, target, pick(warm, sideOurs, f), pick(warm, sideOstree, f))
		}
		b.report.Rows = append(b.report.Rows,
			row(name, "seconds", Lower, devpullTimeTarget, func(s devpullSample) float64 { return s.wall.Seconds() }),
			row(short+": bytes sent", "MB", Lower, devpullBytesTarget, func(s devpullSample) float64 { return float64(s.Bytes) / 1e6 }),
			row(short+": requests", "requests", Lower, 0, func(s devpullSample) float64 { return float64(s.Requests) }),
			row(short+": bytes on the wire", "MB", Lower, 0, func(s devpullSample) float64 { return float64(s.Wire) / 1e6 }),
			row(short+": client CPU", "cpu-seconds", Lower, 0, func(s devpullSample) float64 { return s.clientCPU.Seconds() }),
			row(short+": server CPU", "cpu-seconds", Lower, 0, func(s devpullSample) float64 { return s.serverCPU.Seconds() }),
		)
	}
	b.report.Notes = append(b.report.Notes,
		fmt.Sprintf("devpull: release 1 is %s (%d objects, %.0f MB); release 2 changes every 20th regular file and adds %d files (%d objects, %.0f MB); both published with our publisher, served by mxos-server on 127.0.0.1.",
			src1.desc, n1, float64(sz1)/1e6, release2NewFiles, n2, float64(sz2)/1e6),
		"devpull: ours is the device puller (internal/ostree/pull, default settings, summary and commit signatures verified with the pinned ed25519 and OpenPGP keys) in a child process, into a fresh archive repository; "+
			"ostree is `ostree pull` with its default fetcher, gpg-verify=true and gpg-verify-summary=true, into a fresh archive repository. "+
			"update rows start from a copy of a repository that client filled with release 1. Every pull is checked to end at release 2.",
		"devpull: bytes sent are response bodies counted by the server; bytes on the wire add headers (the server process's written bytes).",
		"devpull: measured repositories are removed only at the end, so no pull runs right after thousands of deletions (ext4 then searches longer for a free inode).")
	return stopServer(srv.httpServer)
}

// pullHow tunes one measured pull.
type pullHow struct {
	// requireDelta: the pull must apply a static delta (ostree pull
	// --require-static-deltas; our puller fails when it used none or
	// dropped it for loose objects).
	requireDelta bool
	// bareUser: stock ostree pulls into a bare-user repository instead of
	// an archive one (ostree 2022.7 applies no delta into an archive
	// repository).
	bareUser bool
}

// devpullOnce pulls commit want into dir with one client, starting from a
// copy of seed when seed is not empty, and measures the pull alone.
func (b *bench) devpullOnce(ctx context.Context, srv *devpullServer, side devpullSide, dir, want, seed string, how pullHow) (devpullSample, error) {
	env := childEnviron()
	url := strings.TrimSuffix(srv.base, "/")
	var args []string
	var exe string
	if seed != "" {
		if err := cloneRepo(seed, dir); err != nil {
			return devpullSample{}, err
		}
	}
	switch side {
	case sideOstree:
		if seed == "" {
			repoArg := "--repo=" + dir
			mode := "--mode=archive"
			if how.bareUser {
				mode = "--mode=bare-user"
			}
			if _, err := runTimed(ctx, b.o.timeout, env, b.o.ostree, repoArg, "init", mode); err != nil {
				return devpullSample{}, err
			}
			if _, err := runTimed(ctx, b.o.timeout, env, b.o.ostree, repoArg, "remote", "add",
				"--set=gpg-verify=true", "--set=gpg-verify-summary=true",
				"--gpg-import="+filepath.Join(b.keys, sign.OpenPGPPublicFile), pullRemote, url); err != nil {
				return devpullSample{}, err
			}
		}
		if seed != "" {
			// The seed was pulled from an earlier server process.
			if _, err := runTimed(ctx, b.o.timeout, env, b.o.ostree, "--repo="+dir, "config", "set",
				fmt.Sprintf("remote %q.url", pullRemote), url); err != nil {
				return devpullSample{}, err
			}
		}
		exe, args = b.o.ostree, []string{"--repo=" + dir, "pull", pullRemote, benchRef}
		if how.requireDelta {
			args = append(args, "--require-static-deltas")
		}
	case sideOurs:
		exe, args = b.exe, []string{"devpull-child", "--repo", dir, "--keys", b.keys, "--url", url, "--ref", benchRef}
		if how.requireDelta {
			args = append(args, "--require-delta")
		}
		if b.o.cpuProfile != "" {
			args = append(args, "--cpuprofile", filepath.Join(b.o.cpuProfile, "devpull-"+filepath.Base(dir)+".pprof"))
		}
	}
	syncFS()
	before, err := srv.read(ctx)
	if err != nil {
		return devpullSample{}, err
	}
	cpu0, err := groupCPU(srv.d.cmd.Process.Pid)
	if err != nil {
		return devpullSample{}, err
	}
	res, err := runTimed(ctx, b.o.timeout, env, exe, args...)
	if err != nil {
		return devpullSample{}, fmt.Errorf("%s pull: %w", side, err)
	}
	cpu1, err := groupCPU(srv.d.cmd.Process.Pid)
	if err != nil {
		return devpullSample{}, err
	}
	after, err := srv.read(ctx)
	if err != nil {
		return devpullSample{}, err
	}
	refDir := filepath.Join(dir, "refs", "heads")
	if side == sideOstree {
		refDir = filepath.Join(dir, "refs", "remotes", pullRemote)
	}
	got, err := readRefFile(filepath.Join(refDir, benchRef))
	if err != nil {
		return devpullSample{}, fmt.Errorf("%s pull: %w", side, err)
	}
	if got != want {
		return devpullSample{}, fmt.Errorf("%s pull: got commit %s, want %s", side, got, want)
	}
	return devpullSample{wall: res.wall, clientCPU: res.cpu, serverCPU: cpu1 - cpu0, serverStats: after.sub(before)}, nil
}

// publishVersion publishes source as version on the bench ref into
// data/repo (not timed).
func (b *bench) publishVersion(ctx context.Context, data, source, version string) (string, error) {
	signers, err := sign.LoadSigners(b.keys)
	if err != nil {
		return "", fmt.Errorf("loading benchmark keys: %w", err)
	}
	repo, err := ostree.Create(filepath.Join(data, "repo"))
	if err != nil {
		return "", fmt.Errorf("creating repository: %w", err)
	}
	p := &release.Publisher{Repo: repo, Signers: signers}
	res, err := p.Publish(ctx, release.Request{Ref: benchRef, Version: version, Source: source})
	if err != nil {
		return "", fmt.Errorf("publishing %s: %w", source, err)
	}
	return res.Commit.String(), nil
}

// release2NewFiles is how many files release 2 adds.
const release2NewFiles = 40

// nextRelease makes (or reuses) release 2 of src: a copy of the tree in
// which every 20th regular file (in path order) gets a line appended and
// release2NewFiles new small files appear, like a point release.
func (b *bench) nextRelease(ctx context.Context, src publishSource) (publishSource, error) {
	name := strings.TrimSuffix(filepath.Base(src.path), ".tar")
	if fi, err := os.Stat(src.path); err == nil {
		name = fmt.Sprintf("%s-%d-%d", name, fi.Size(), fi.ModTime().Unix())
	}
	out := filepath.Join(b.work, "gen", "devpull-r2-"+name+"-v1")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return publishSource{}, fmt.Errorf("creating %s: %w", filepath.Dir(out), err)
	}
	logf(b.stderr, "devpull: making release 2 of %s", src.path)
	st, reused, err := cached(out, func(tmp string) (treeStats, error) {
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return treeStats{}, err
		}
		var cmd *exec.Cmd
		if src.kind == "tar" {
			cmd = exec.CommandContext(ctx, "tar", "-C", tmp, "--numeric-owner", "--xattrs", "-xpf", src.path)
		} else {
			cmd = exec.CommandContext(ctx, "cp", "-a", src.path+"/.", tmp)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return treeStats{}, fmt.Errorf("copying %s: %w: %s", src.path, err, out)
		}
		return mutateRelease(tmp)
	})
	if err != nil {
		return publishSource{}, err
	}
	logf(b.stderr, "devpull: release 2: %d files changed or added, %s (%s)", st.Files, out, reusedWord(reused))
	return publishSource{kind: "dir", path: out, desc: src.desc + ", release 2"}, nil
}

// mutateRelease turns a copy of release 1 into release 2 in place.
func mutateRelease(root string) (treeStats, error) {
	var st treeStats
	i := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		i++
		if i%20 != 7 {
			return nil
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, werr := fmt.Fprintf(f, "\n# release 2 of %s\n", filepath.Base(p))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		st.Files++
		return werr
	})
	if err != nil {
		return st, fmt.Errorf("making release 2: %w", err)
	}
	dir := filepath.Join(root, "usr", "share", "mxos-release-2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, fmt.Errorf("making release 2: %w", err)
	}
	for k := range release2NewFiles {
		body := strings.Repeat(fmt.Sprintf("release 2 file %d\n", k), 50+k*20)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("note-%02d.txt", k)), []byte(body), 0o644); err != nil {
			return st, fmt.Errorf("making release 2: %w", err)
		}
		st.Files++
		st.Bytes += int64(len(body))
	}
	return st, nil
}

// cloneRepo copies an archive repository: objects are immutable in both
// clients, so they are hard-linked; everything else is copied.
func cloneRepo(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(out, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, out)
		case !d.Type().IsRegular():
			return nil
		case strings.HasPrefix(rel, "objects"+string(filepath.Separator)) && !strings.HasSuffix(p, ".commitmeta"):
			return os.Link(p, out)
		}
		// ostree keeps its summary cache's validators in the mtime and an
		// xattr: keep both, or its conditional requests would change.
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(out, b, info.Mode().Perm()); err != nil {
			return err
		}
		if err := copyXattrs(p, out); err != nil {
			return err
		}
		return os.Chtimes(out, info.ModTime(), info.ModTime())
	})
}

// copyXattrs copies the extended attributes of file src to dst.
func copyXattrs(src, dst string) error {
	buf := make([]byte, 4096)
	n, err := unix.Listxattr(src, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("listing xattrs of %s: %w", src, err)
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Getxattr(src, name, val)
		if err != nil {
			return fmt.Errorf("reading xattr %s of %s: %w", name, src, err)
		}
		if err := unix.Setxattr(dst, name, val[:m], 0); err != nil {
			return fmt.Errorf("copying xattr %s to %s: %w", name, dst, err)
		}
	}
	return nil
}

// reachable counts the objects commit c reaches and their stored size.
func reachable(repo *ostree.Repo, c string) (int, int64, error) {
	objs, err := reachableSet(repo, c)
	if err != nil {
		return 0, 0, err
	}
	var size int64
	for o := range objs {
		if fi, err := os.Stat(repo.ObjectFile(o.Checksum, o.Type)); err == nil {
			size += fi.Size()
		}
	}
	return len(objs), size, nil
}

// newObjects counts the objects c2 reaches that c1 does not.
func newObjects(repo *ostree.Repo, c1, c2 string) int {
	a, err1 := reachableSet(repo, c1)
	b, err2 := reachableSet(repo, c2)
	if err1 != nil || err2 != nil {
		return 0
	}
	n := 0
	for o := range b {
		if !a[o] {
			n++
		}
	}
	return n
}

func reachableSet(repo *ostree.Repo, c string) (map[ostree.ObjectRef]bool, error) {
	sum, err := ostree.ParseChecksum(c)
	if err != nil {
		return nil, err
	}
	cm, err := repo.ReadCommit(sum)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", c, err)
	}
	seen := map[ostree.ObjectRef]bool{{Checksum: sum, Type: ostree.ObjCommit}: true}
	var walk func(tree, meta ostree.Checksum) error
	walk = func(tree, meta ostree.Checksum) error {
		seen[ostree.ObjectRef{Checksum: meta, Type: ostree.ObjDirMeta}] = true
		k := ostree.ObjectRef{Checksum: tree, Type: ostree.ObjDirTree}
		if seen[k] {
			return nil
		}
		seen[k] = true
		dt, err := repo.ReadDirTree(tree)
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			seen[ostree.ObjectRef{Checksum: f.Checksum, Type: ostree.ObjFile}] = true
		}
		for _, d := range dt.Dirs {
			if err := walk(d.Tree, d.Meta); err != nil {
				return err
			}
		}
		return nil
	}
	return seen, walk(cm.RootTree, cm.RootMeta)
}

// startDevpullServer starts the devpull server child on data.
func (b *bench) startDevpullServer(ctx context.Context, data, label string) (*devpullServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	sport, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	stats := "127.0.0.1:" + strconv.Itoa(sport)
	args := []string{"devpull-serve-child", "--data", data, "--listen", listen, "--stats-listen", stats}
	if b.o.cpuProfile != "" {
		args = append(args, "--cpuprofile", filepath.Join(b.o.cpuProfile, "server-devpull-"+label+".pprof"))
	}
	cmd := exec.Command(b.exe, args...)
	cmd.Env = childEnviron()
	d, err := b.procs.start("mxos-server", cmd)
	if err != nil {
		return nil, err
	}
	s := &devpullServer{httpServer: &httpServer{name: "mxos-server", base: "http://" + listen + "/repo/", d: d}, stats: "http://" + stats + "/stats"}
	if err := waitReady(ctx, s.httpServer); err != nil {
		return nil, err
	}
	return s, nil
}

// read fetches the server child's counters.
func (s *devpullServer) read(ctx context.Context) (serverStats, error) {
	var st serverStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.stats, nil)
	if err != nil {
		return st, err
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return st, fmt.Errorf("reading server counters: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("reading server counters: %w", err)
	}
	return st, nil
}

// requestCounter is a zap core that counts the server's per-request Debug
// records (requests, body bytes, statuses) without encoding them, and
// passes everything at Warn and above to next.
type requestCounter struct {
	next zapcore.Core
	st   *requestCounts
}

// requestCounts are the totals, shared by the cores With derives.
type requestCounts struct {
	requests atomic.Int64
	bytes    atomic.Int64
	mu       sync.Mutex
	status   map[string]int64
}

func newRequestCounter(next zapcore.Core) *requestCounter {
	return &requestCounter{next: next, st: &requestCounts{status: map[string]int64{}}}
}

func (c *requestCounter) Enabled(zapcore.Level) bool { return true }

func (c *requestCounter) With(fields []zapcore.Field) zapcore.Core {
	return &requestCounter{next: c.next.With(fields), st: c.st}
}

func (c *requestCounter) Sync() error { return c.next.Sync() }

func (c *requestCounter) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level == zapcore.DebugLevel && e.Message == "request" {
		return ce.AddCore(e, c)
	}
	return c.next.Check(e, ce)
}

func (c *requestCounter) Write(_ zapcore.Entry, fields []zapcore.Field) error {
	c.st.requests.Add(1)
	for _, f := range fields {
		switch f.Key {
		case "bytes":
			c.st.bytes.Add(f.Integer)
		case "status":
			c.st.mu.Lock()
			c.st.status[strconv.FormatInt(f.Integer, 10)]++
			c.st.mu.Unlock()
		}
	}
	return nil
}

func (c *requestCounter) snapshot() serverStats {
	st := serverStats{Requests: c.st.requests.Load(), Bytes: c.st.bytes.Load(), Wire: selfWchar(), Status: map[string]int64{}}
	c.st.mu.Lock()
	for k, v := range c.st.status {
		st.Status[k] = v
	}
	c.st.mu.Unlock()
	return st
}

// selfWchar is the bytes this process passed to write(2), writev(2) and
// sendfile(2): on a server that writes no files, what it sent.
func selfWchar() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// newDevpullServeChildCmd is mxos-server serving DATA/repo with request
// counters readable at --stats-listen /stats.
func newDevpullServeChildCmd() *cobra.Command {
	var data, listen, statsListen string
	cmd := profiledChild("devpull-serve-child", "Run our server with request counters as a benchmark child (internal)", cobra.NoArgs, func(cmd *cobra.Command, _ []string) (err error) {
		counter := newRequestCounter(childLogger().Core())
		srv, err := server.New(server.Config{DataDir: data, Listen: listen, Logger: zap.New(counter)})
		if err != nil {
			return fmt.Errorf("devpull-serve-child: %w", err)
		}
		defer srv.Close()
		var lc net.ListenConfig
		sln, err := lc.Listen(cmd.Context(), "tcp", statsListen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", statsListen, err)
		}
		stats := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(counter.snapshot())
		})}
		go func() { _ = stats.Serve(sln) }()
		defer stats.Close()
		return serveAndAnnounce(cmd, srv, listen)
	})
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "data directory (serves DATA/repo)")
	f.StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on")
	f.StringVar(&statsListen, "stats-listen", "127.0.0.1:0", "address serving the counters at /stats")
	return cmd
}

// newDevpullChildCmd is the device's pull as mxos-updater runs it: the
// pinned keys, the mirror URL and the default Puller settings.
func newDevpullChildCmd() *cobra.Command {
	var repoDir, keys, url, ref string
	var requireDelta bool
	cmd := profiledChild("devpull-child", "Run our device pull as a benchmark child (internal)", cobra.NoArgs, func(cmd *cobra.Command, _ []string) (err error) {
		verifiers, err := sign.LoadVerifiers(keys)
		if err != nil {
			return fmt.Errorf("devpull-child: %w", err)
		}
		repo, err := ostree.Create(repoDir)
		if err != nil {
			return fmt.Errorf("devpull-child: %w", err)
		}
		p := &pull.Puller{URLs: []string{url}, Verifiers: verifiers}
		used := errors.New("no static delta listed for the pull")
		p.OnDelta = func(id ostree.DeltaID, err error) {
			used = err
			if err != nil {
				used = fmt.Errorf("static delta %s dropped: %w", id.Name(), err)
			}
		}
		c, err := p.Pull(cmd.Context(), repo, ref, pull.Options{})
		if err != nil {
			return fmt.Errorf("devpull-child: %w", err)
		}
		if requireDelta && used != nil {
			return fmt.Errorf("devpull-child: --require-delta: %w", used)
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), c)
		return err
	})
	f := cmd.Flags()
	f.StringVar(&repoDir, "repo", "", "destination repository")
	f.StringVar(&keys, "keys", "", "directory with the public keys")
	f.StringVar(&url, "url", "", "repository base URL")
	f.StringVar(&ref, "ref", "", "ref to pull")
	f.BoolVar(&requireDelta, "require-delta", false, "fail unless the pull applied a static delta")
	return cmd
}
