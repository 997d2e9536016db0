package ostreeadmin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// BenchmarkUpdateRootfs times one update cycle on a real OS tree: each
// iteration commits the tree with one changed file (untimed), then times
// Deploy (pull-local + ostree admin deploy), Switch (undeploy + deploy as
// default) and GC, and, as the peer, a bare `ostree admin deploy` of the
// same commit. Run it with a tree from shared/tools/mkrootfs.sh:
//
//	MXOS_BENCH_ROOTFS=/path/to/rootfs go test -run '^$' -bench UpdateRootfs -benchtime 3x ./internal/sysroot/ostreeadmin/
func BenchmarkUpdateRootfs(b *testing.B) {
	rootfs := os.Getenv("MXOS_BENCH_ROOTFS")
	if rootfs == "" {
		testtool.Skip(b, "set MXOS_BENCH_ROOTFS to an OS tree (shared/tools/mkrootfs.sh)")
	}
	ctx := context.Background()
	s := newSysroot(b, Options{})
	boot := b.TempDir()
	writeTree(b, boot, "bench", true)
	// Only the kernel: the tree brings its own /etc (ostree moves it to usr/etc).
	for _, p := range []string{"usr/bin", "usr/etc"} {
		if err := os.RemoveAll(filepath.Join(boot, p)); err != nil {
			b.Fatal(err)
		}
	}
	ostreeCmd := func(args ...string) string {
		b.Helper()
		out, err := exec.Command("ostree", args...).CombinedOutput()
		if err != nil {
			b.Fatalf("ostree %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// ostree admin deploy wants the /etc defaults in usr/etc, as an OS
	// build pipeline commits them: a hardlinked copy with etc moved there.
	tree := filepath.Join(b.TempDir(), "tree")
	if out, err := exec.Command("cp", "-a", "--link", rootfs, tree).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.Rename(filepath.Join(tree, "etc"), filepath.Join(tree, "usr/etc")); err != nil {
		b.Fatal(err)
	}
	ostreeCmd("commit", "--repo="+s.RepoPath(), "-b", "bench/base", "--owner-uid=0", "--owner-gid=0",
		"--tree=dir="+tree, "--tree=dir="+boot)
	n := 0
	next := func() ostree.Checksum {
		b.Helper()
		n++
		overlay := b.TempDir()
		if err := os.MkdirAll(filepath.Join(overlay, "usr/share/mxos"), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(overlay, "usr/share/mxos/build"), []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		c, err := ostree.ParseChecksum(ostreeCmd("commit", "--repo="+s.RepoPath(), "-b", "bench/next",
			"--owner-uid=0", "--owner-gid=0", "--add-metadata-string=version=1."+strconv.Itoa(n),
			"--tree=ref=bench/base", "--tree=dir="+overlay))
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	first := next()
	d, err := s.Deploy(ctx, stagingRepo(b, s), first, sysroot.Origin{})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Switch(ctx, d); err != nil {
		b.Fatal(err)
	}
	var tDeploy, tSwitch, tGC, tPeer time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := next()
		b.StartTimer()
		t0 := time.Now()
		d, err := s.Deploy(ctx, stagingRepo(b, s), c, sysroot.Origin{Version: "1." + strconv.Itoa(n)})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := s.Switch(ctx, d); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := s.GC(ctx, 0); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		// Peer: stock ostree admin deploy of the same commit, already in ostree/repo.
		ostreeCmd("admin", "deploy", "--sysroot="+s.Path(), "--os=mxos", "--retain", "--not-as-default", c.String())
		t4 := time.Now()
		b.StopTimer()
		all, err := s.readAll()
		if err != nil {
			b.Fatal(err)
		}
		peer := ""
		for _, it := range s.ours(all) {
			if strings.HasPrefix(it.name, c.String()) && it.name != d.Name {
				peer = it.name
			}
		}
		if err := s.undeploy(ctx, peer); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		tDeploy += t1.Sub(t0)
		tSwitch += t2.Sub(t1)
		tGC += t3.Sub(t2)
		tPeer += t4.Sub(t3)
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
	b.ReportMetric(per(tDeploy), "deploy-s/op")
	b.ReportMetric(per(tSwitch), "switch-s/op")
	b.ReportMetric(per(tGC), "gc-s/op")
	b.ReportMetric(per(tPeer), "ostree-deploy-s/op")
	if tPeer > 0 {
		b.ReportMetric(float64(tDeploy)/float64(tPeer), "deploy/ostree-deploy")
	}
}
