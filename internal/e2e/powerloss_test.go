package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// Power-loss tests: the device's sysroot lives on a real ext4 file system
// on a loop device whose backing file is served by this test (FUSE) from
// a disk model that, like a disk with a volatile write cache, keeps only
// what was written before the last flush. At the cut, a random subset of
// the writes since the last flush reaches the platter (a disk may write
// back its cache in any order) and every later write is dropped, as with
// dm-flakey's drop_writes (device-mapper is not in this machine's
// kernel: /dev/mapper/control has no driver). Each cut must leave an ext4
// that e2fsck finds clean after the journal replay, a bootable old or new
// deployment, and an updater that finishes the upgrade.

// blockSize is the unit a cut persists or loses whole.
const blockSize = 4096

// cutDisk is the disk model.
type cutDisk struct {
	mu      sync.Mutex
	durable []byte           // as of the last flush
	pending map[int64][]byte // blocks written since
	rng     *rand.Rand
	cutAt   int // the write at which power is cut; 0: never
	cutAtF  int // or the flush (cut as it arrives, so it is not honoured)
	writes  int
	flushes int
	isCut   bool
	cutCh   chan struct{}
}

func newCutDisk(img []byte, cutAt, cutAtFlush int, seed uint64) *cutDisk {
	return &cutDisk{durable: img, pending: map[int64][]byte{}, cutAt: cutAt, cutAtF: cutAtFlush,
		rng: rand.New(rand.NewPCG(seed, 3)), cutCh: make(chan struct{})}
}

func (d *cutDisk) block(b int64) []byte {
	if p, ok := d.pending[b]; ok {
		return p
	}
	return d.durable[b*blockSize : (b+1)*blockSize]
}

func (d *cutDisk) read(dest []byte, off int64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for n < len(dest) && off+int64(n) < int64(len(d.durable)) {
		pos := off + int64(n)
		b := d.block(pos / blockSize)
		n += copy(dest[n:], b[pos%blockSize:])
	}
	return n
}

func (d *cutDisk) write(data []byte, off int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.isCut {
		return
	}
	for n := 0; n < len(data) && off+int64(n) < int64(len(d.durable)); {
		pos := off + int64(n)
		bi := pos / blockSize
		p, ok := d.pending[bi]
		if !ok {
			p = bytes.Clone(d.block(bi))
			d.pending[bi] = p
		}
		n += copy(p[pos%blockSize:], data[n:])
	}
	d.writes++
	if d.writes == d.cutAt {
		d.cutLocked()
	}
}

func (d *cutDisk) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.isCut {
		return
	}
	if d.flushes+1 == d.cutAtF {
		d.cutLocked()
		return
	}
	for bi, p := range d.pending {
		copy(d.durable[bi*blockSize:], p)
	}
	clear(d.pending)
	d.flushes++
}

// cut loses power: some unflushed blocks reach the disk, the rest and
// every later write are lost.
func (d *cutDisk) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cutLocked()
}

func (d *cutDisk) cutLocked() {
	if d.isCut {
		return
	}
	for bi, p := range d.pending {
		if d.rng.IntN(2) == 0 {
			copy(d.durable[bi*blockSize:], p)
		}
	}
	clear(d.pending)
	d.isCut = true
	close(d.cutCh)
}

// diskNode is the one file of the FUSE file system: the current disk.
type diskNode struct {
	fs.Inode
	mu   sync.Mutex
	disk *cutDisk
}

func (n *diskNode) cur() *cutDisk {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.disk
}

var (
	_ fs.NodeGetattrer = (*diskNode)(nil)
	_ fs.NodeOpener    = (*diskNode)(nil)
	_ fs.NodeReader    = (*diskNode)(nil)
	_ fs.NodeWriter    = (*diskNode)(nil)
	_ fs.NodeFsyncer   = (*diskNode)(nil)
	_ fs.NodeSetattrer = (*diskNode)(nil)
	_ fs.NodeFlusher   = (*diskNode)(nil)
)

func (n *diskNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(len(n.cur().durable))
	return 0
}

func (n *diskNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return n.Getattr(ctx, f, out)
}

func (n *diskNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (n *diskNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	k := n.cur().read(dest, off)
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *diskNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.cur().write(data, off)
	return uint32(len(data)), 0
}

func (n *diskNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	n.cur().flush()
	return 0
}

func (n *diskNode) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno { return 0 }

type diskRoot struct {
	fs.Inode
	node *diskNode
}

func (r *diskRoot) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, r.node, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild("disk", ch, false)
}

// mountDisk serves node as dir/disk.
func mountDisk(t testing.TB, dir string, node *diskNode) {
	t.Helper()
	srv, err := fs.Mount(dir, &diskRoot{node: node}, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMountStrict: true, FsName: "mxos-cutdisk", Name: "cutdisk"}})
	if err != nil {
		testtool.Missing(t, "FUSE mount refused: "+err.Error())
	}
	t.Cleanup(func() { _ = srv.Unmount() })
}

// powerCuts is the number of cuts: 20, or MXOS_POWERCUTS=N for a soak.
func powerCuts(t testing.TB) int {
	if v := os.Getenv("MXOS_POWERCUTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MXOS_POWERCUTS=%q: want a number of cuts", v)
		}
		return n
	}
	return 20
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(bytes.TrimSpace(out))
}

// attach makes a loop device of file and mounts its ext4 at dir; the
// returned function unmounts and detaches. noauto_da_alloc turns off
// ext4's flush of replaced files on rename, which hides a missing fsync
// (other file systems have no such heuristic).
func attach(t testing.TB, file, dir string) func() {
	t.Helper()
	dev := mustRun(t, "losetup", "-f", "--show", file)
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "noauto_da_alloc", dev, dir).CombinedOutput(); err != nil {
		_ = exec.Command("losetup", "-d", dev).Run()
		t.Fatalf("mount %s: %v\n%s", dev, err, out)
	}
	done := false
	detach := func() {
		if done {
			return
		}
		done = true
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	}
	t.Cleanup(detach)
	return detach
}

// fsckClean replays the journal of the ext4 image (a mount) and requires
// e2fsck to find nothing to fix.
func fsckClean(t testing.TB, img, mnt string) {
	t.Helper()
	attach(t, img, mnt)()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn after the cut: %v\n%s", err, out)
	}
}

// TestPowerCutDuringUpgrade cuts the power of the device during
// `mxos-updater upgrade` 20 times (MXOS_POWERCUTS=N for a soak), each at
// a random write of the upgrade, on ext4 over the disk model above. After
// each cut: e2fsck clean, the device boots its old or its new deployment
// (checkDevice: current names a complete deployment matching its commit,
// the local store fscks clean, a switched update waits for its health
// verdict), and the next upgrade and boot finish on the newest version.
func TestPowerCutDuringUpgrade(t *testing.T) {
	testtool.RequireRoot(t, "loop devices, mount and FUSE")
	for _, tool := range []string{"losetup", "mkfs.ext4", "e2fsck", "mount", "umount"} {
		requireTool(t, tool)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testtool.Missing(t, "no /dev/fuse: "+err.Error())
	}
	s := newUpdaterSite(t)
	mxosUpdater(t)
	cuts := powerCuts(t)

	// The device's file system: an ext4 image holding the installed sysroot.
	work := t.TempDir()
	img := filepath.Join(work, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 96<<20); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mkfs.ext4", "-q", "-F", img)
	mnt := filepath.Join(work, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	detach := attach(t, img, mnt)
	mustRun(t, "cp", "-a", s.root+"/.", mnt)
	detach()
	if err := os.RemoveAll(s.root); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.root, 0o755); err != nil {
		t.Fatal(err)
	}

	fuseDir := filepath.Join(work, "fuse")
	if err := os.Mkdir(fuseDir, 0o755); err != nil {
		t.Fatal(err)
	}
	node := &diskNode{}
	loadDisk := func(cutAt, cutAtFlush int, seed uint64) *cutDisk {
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		d := newCutDisk(b, cutAt, cutAtFlush, seed)
		node.mu.Lock()
		node.disk = d
		node.mu.Unlock()
		return d
	}
	loadDisk(0, 0, 0)
	mountDisk(t, fuseDir, node)
	disk := filepath.Join(fuseDir, "disk")

	// upgradeOnDisk runs the upgrade on the disk model, cutting the power
	// at its cutAt-th write or cutAtFlush-th flush; it returns the disk and
	// whether the upgrade finished before the cut.
	upgradeOnDisk := func(cutAt, cutAtFlush int, seed uint64) (*cutDisk, bool) {
		d := loadDisk(cutAt, cutAtFlush, seed)
		detach := attach(t, disk, s.root)
		cmd := s.cmd(nil, "upgrade")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		finished := false
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("upgrade failed by itself: %v\n%s", err, out.String())
			}
			finished = true
		case <-d.cutCh:
			killGroup(cmd)
			<-exited
		}
		d.cut() // power off: what the page cache still holds is lost
		detach()
		if err := os.WriteFile(img, d.durable, 0o600); err != nil {
			t.Fatal(err)
		}
		return d, finished
	}

	// Calibration: how many writes an upgrade makes.
	want := s.publish()
	start := time.Now()
	d, _ := upgradeOnDisk(0, 0, 0)
	total, totalFlushes := d.writes, d.flushes
	t.Logf("an upgrade on the disk model: %d writes, %d flushes, %s", d.writes, d.flushes, time.Since(start).Round(time.Millisecond))
	if total < 10 || d.flushes == 0 {
		t.Fatalf("the disk model saw %d writes and %d flushes: the loop device does not write through it", d.writes, d.flushes)
	}
	fsckClean(t, img, s.root)
	detach = attach(t, img, s.root)
	s.finish(want)
	detach()

	seed := uint64(time.Now().UnixNano())
	t.Logf("cut points from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	results := map[string]int{}
	// Half the cuts fall on a random write, half on a random flush: the
	// download makes most of the writes, while deploying and switching
	// are a few large journal commits, each behind a flush.
	for i := range cuts {
		want := s.publish()
		cutAt, cutAtFlush, at := 1+rng.IntN(total), 0, ""
		if i%2 == 1 {
			cutAt, cutAtFlush = 0, 1+rng.IntN(totalFlushes)
			at = fmt.Sprintf("flush %d of ~%d", cutAtFlush, totalFlushes)
		} else {
			at = fmt.Sprintf("write %d of ~%d", cutAt, total)
		}
		_, finished := upgradeOnDisk(cutAt, cutAtFlush, seed+uint64(i))
		fsckClean(t, img, s.root)
		detach := attach(t, img, s.root)
		got := s.checkDevice()
		if t.Failed() {
			t.Fatalf("cut %d at %s left the device broken", i, at)
		}
		outcome := "old deployment"
		switch {
		case finished:
			outcome = "upgrade finished first"
		case got == want:
			outcome = "new deployment"
		}
		results[outcome]++
		t.Logf("cut %d at %s: %s (%s)", i, at, outcome, s.stage(want, got))
		s.finish(want)
		detach()
		if t.Failed() {
			t.Fatalf("after cut %d at %s the upgrade did not finish", i, at)
		}
	}
	t.Logf("%d power cuts: %v", cuts, results)
}
