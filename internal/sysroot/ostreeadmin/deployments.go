package ostreeadmin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// originGroup is the .origin group holding what the agent knows about a
// deployment; ostree ignores groups it does not know and keeps the file
// with the deployment.
const originGroup = "mxos-updater"

// item is one deployment in ostree's order (index 0 is the default).
type item struct {
	stateroot string
	name      string
	index     int // position in ostree's list of all stateroots: what undeploy takes
}

// stateAndAll reads the state file and then every deployment; a listing
// error is prefixed with op when op is set.
func (s *Sysroot) stateAndAll(op string) (*state, []item, error) {
	st, err := s.loadState()
	if err != nil {
		return nil, nil, err
	}
	all, err := s.readAll()
	if err != nil {
		if op != "" {
			err = fmt.Errorf("%s: %w", op, err)
		}
		return nil, nil, err
	}
	return st, all, nil
}

// readAll lists the deployments the way libostree loads them: the
// current boot loader entries (boot/loader -> loader.N), sorted by their
// version field, highest first, each resolved through its ostree= link
// to ostree/deploy/<stateroot>/deploy/<commit>.<serial>.
func (s *Sysroot) readAll() ([]item, error) {
	t, err := os.Readlink(filepath.Join(s.path, "boot", "loader"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // nothing deployed yet
	}
	if err != nil {
		return nil, fmt.Errorf("%w: boot/loader: %v", sysroot.ErrCorrupt, err)
	}
	if t != "loader.0" && t != "loader.1" {
		return nil, fmt.Errorf("%w: boot/loader -> %q", sysroot.ErrCorrupt, t)
	}
	dir := filepath.Join(s.path, "boot", t, "entries")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read boot entries: %w", err)
	}
	type entry struct {
		version string
		it      item
	}
	var list []entry
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		rel := filepath.Join("boot", t, "entries", e.Name())
		b, err := readSmall(filepath.Join(s.path, rel))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", rel, err)
		}
		be, err := parseBLS(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", sysroot.ErrCorrupt, rel, err)
		}
		link, err := parseOstreeKarg(be.Options)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", sysroot.ErrCorrupt, rel, err)
		}
		target, err := os.Readlink(filepath.Join(s.path, filepath.FromSlash(link.Rel())))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", sysroot.ErrCorrupt, rel, err)
		}
		root, name, err := parseDeployLink(target)
		if err != nil || root != link.Stateroot {
			return nil, fmt.Errorf("%w: %s: %s -> %q", sysroot.ErrCorrupt, rel, link.Rel(), target)
		}
		list = append(list, entry{be.Version, item{stateroot: root, name: name}})
	}
	sort.SliceStable(list, func(i, j int) bool { return versionLess(list[j].version, list[i].version) })
	out := make([]item, len(list))
	for i, e := range list {
		e.it.index = i
		out[i] = e.it
	}
	return out, nil
}

// versionLess orders entry versions: numerically when both are numbers
// (ostree writes 1, 2, ...), else as strings.
func versionLess(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil {
		return x < y
	}
	return a < b
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, maxStateFile+1)
	n, err := f.Read(b)
	for err == nil && n < len(b) {
		var m int
		m, err = f.Read(b[n:])
		n += m
	}
	if n > maxStateFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStateFile)
	}
	return b[:n], nil
}

// ours returns the items of this stateroot, in ostree's order.
func (s *Sysroot) ours(all []item) []item {
	var out []item
	for _, it := range all {
		if it.stateroot == s.stateroot {
			out = append(out, it)
		}
	}
	return out
}

func find(list []item, name string) (item, bool) {
	for _, it := range list {
		if it.name == name {
			return it, true
		}
	}
	return item{}, false
}

// load returns the deployment called name with its origin.
func (s *Sysroot) load(name string) (sysroot.Deployment, error) {
	sum, serial, err := parseName(name)
	if err != nil {
		return sysroot.Deployment{}, fmt.Errorf("%w: %v", sysroot.ErrNoDeployment, err)
	}
	p := filepath.Join(s.deployDir(), name)
	st, err := os.Lstat(p)
	if err != nil || !st.IsDir() {
		return sysroot.Deployment{}, fmt.Errorf("%w: %s", sysroot.ErrNoDeployment, name)
	}
	d := sysroot.Deployment{Name: name, Commit: sum, Serial: serial, Path: p, Origin: sysroot.Origin{Commit: sum.String()}}
	created := st.ModTime()
	if b, err := readSmall(p + ".origin"); err == nil {
		kf, err := parseKeyFile(b)
		if err != nil {
			return sysroot.Deployment{}, fmt.Errorf("%w: %s.origin: %v", sysroot.ErrCorrupt, name, err)
		}
		d.Origin.Ref = kf.get(originGroup, "ref")
		d.Origin.Version = kf.get(originGroup, "version")
		if c := kf.get(originGroup, "created"); c != "" {
			if t, err := time.Parse(time.RFC3339Nano, c); err == nil {
				created = t
			}
		}
		if d.Origin.Ref == "" {
			// A deployment made by hand or by an image builder: its
			// refspec is [remote:]ref or a pinned checksum.
			rs := kf.get("origin", "refspec")
			if _, err := ostree.ParseChecksum(rs); err != nil && rs != "" {
				if _, ref, ok := strings.Cut(rs, ":"); ok {
					rs = ref
				}
				d.Origin.Ref = rs
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return sysroot.Deployment{}, fmt.Errorf("read %s.origin: %w", name, err)
	}
	d.Origin.Created = created.UTC()
	if d.Origin.Version == "" {
		if c, err := s.sysrootCommit(sum); err == nil {
			d.Origin.Version = c.Version()
		}
	}
	return d, nil
}

// sysrootCommit reads a commit object of the sysroot's bare repository
// (metadata objects are stored as in archive repositories).
func (s *Sysroot) sysrootCommit(c ostree.Checksum) (*ostree.Commit, error) {
	p := filepath.Join(s.SysrootRepoPath(), filepath.FromSlash(ostree.ObjectPath(c, ostree.ObjCommit)))
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(b) != c {
		return nil, fmt.Errorf("%w: commit %s does not match its checksum", sysroot.ErrCorrupt, c)
	}
	return ostree.ParseCommit(b)
}

// bootedName returns the deployment of this stateroot whose directory is
// the running system's root (same device and inode), or "".
func (s *Sysroot) bootedName(list []item) string {
	var root syscall.Stat_t
	if err := syscall.Stat(s.bootedRoot, &root); err != nil {
		return ""
	}
	for _, it := range s.ours(list) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(s.deployDir(), it.name), &st); err == nil && st.Dev == root.Dev && st.Ino == root.Ino {
			return it.name
		}
	}
	return ""
}

// Current returns the default deployment: the first of this stateroot in
// ostree's order (what boots next).
func (s *Sysroot) Current() (sysroot.Deployment, error) {
	all, err := s.readAll()
	if err != nil {
		return sysroot.Deployment{}, err
	}
	ours := s.ours(all)
	if len(ours) == 0 {
		return sysroot.Deployment{}, fmt.Errorf("%w: no current deployment", sysroot.ErrNoDeployment)
	}
	return s.load(ours[0].name)
}

// Previous returns the rollback target: the deployment that was the
// default before the last Switch, while it is still deployed and not the
// default. Position alone is not used, because a deployment staged with
// Deploy also sits right after the default in ostree's order.
func (s *Sysroot) Previous() (sysroot.Deployment, error) {
	st, all, err := s.stateAndAll("")
	if err != nil {
		return sysroot.Deployment{}, err
	}
	return s.previous(st, s.ours(all))
}

func (s *Sysroot) previous(st *state, ours []item) (sysroot.Deployment, error) {
	if st.Previous == "" || len(ours) == 0 || ours[0].name == st.Previous {
		return sysroot.Deployment{}, fmt.Errorf("%w: no previous deployment", sysroot.ErrNoDeployment)
	}
	if _, ok := find(ours, st.Previous); !ok {
		return sysroot.Deployment{}, fmt.Errorf("%w: previous deployment %s is gone", sysroot.ErrNoDeployment, st.Previous)
	}
	return s.load(st.Previous)
}

// Booted returns the running deployment when the sysroot is the running
// system's, else the deployment recorded by the last BootAttempt or
// MarkGood.
func (s *Sysroot) Booted() (sysroot.Deployment, error) {
	all, err := s.readAll()
	if err != nil {
		return sysroot.Deployment{}, err
	}
	if b := s.bootedName(all); b != "" {
		return s.load(b)
	}
	st, err := s.loadState()
	if err != nil {
		return sysroot.Deployment{}, err
	}
	if st.Booted == "" {
		return sysroot.Deployment{}, fmt.Errorf("%w: nothing booted yet", sysroot.ErrNoDeployment)
	}
	if _, ok := find(s.ours(all), st.Booted); !ok {
		return sysroot.Deployment{}, fmt.Errorf("%w: booted deployment %s is gone", sysroot.ErrNoDeployment, st.Booted)
	}
	return s.load(st.Booted)
}

// List returns this stateroot's deployments, oldest first (by the time
// Deploy recorded, else the deployment directory's time).
func (s *Sysroot) List() ([]sysroot.Deployment, error) {
	all, err := s.readAll()
	if err != nil {
		return nil, fmt.Errorf("sysroot list: %w", err)
	}
	var out []sysroot.Deployment
	for _, it := range s.ours(all) {
		d, err := s.load(it.name)
		if err != nil {
			return nil, fmt.Errorf("sysroot list: %w", err)
		}
		out = append(out, d)
	}
	sysroot.SortDeployments(out)
	return out, nil
}

// IsBad reports whether commit was rolled back from.
func (s *Sysroot) IsBad(commit ostree.Checksum) (bool, error) {
	st, err := s.loadState()
	if err != nil {
		return false, err
	}
	_, bad := st.Bad[commit.String()]
	return bad, nil
}

// BadCommits returns the abandoned commits, keyed by hex checksum.
func (s *Sysroot) BadCommits() (map[string]sysroot.BadCommit, error) {
	st, err := s.loadState()
	if err != nil {
		return nil, err
	}
	out := make(map[string]sysroot.BadCommit, len(st.Bad))
	for k, v := range st.Bad {
		out[k] = v
	}
	return out, nil
}

// PendingBoot returns the name of the deployment waiting for its first
// good boot (switched to, neither marked good nor rolled back), or "".
// It may name a deployment that is not current when a Switch was
// interrupted; BootAttempt then clears it.
func (s *Sysroot) PendingBoot() (string, error) {
	st, err := s.loadState()
	if err != nil {
		return "", err
	}
	return st.Pending, nil
}

// AdminStatus runs `ostree admin status` and parses it: ostree's own view
// of the deployments, for diagnostics and for tests that check this
// package reads the sysroot the way ostree does.
func (s *Sysroot) AdminStatus(ctx context.Context) ([]StatusEntry, error) {
	out, err := s.admin(ctx, "status")
	if err != nil {
		return nil, err
	}
	list, err := parseStatus([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("ostree admin status: %w", err)
	}
	return list, nil
}

// cleanupLeftovers runs `ostree admin cleanup` when a deployment
// directory of this stateroot has no boot entry: what a deploy killed
// half-way, or a failed one, leaves.
func (s *Sysroot) cleanupLeftovers(ctx context.Context) error {
	all, err := s.readAll()
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(s.deployDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil // os-init makes it with the first deployment
	}
	if err != nil {
		return err
	}
	ours := s.ours(all)
	for _, e := range ents {
		n := strings.TrimSuffix(e.Name(), ".origin")
		if _, ok := find(ours, n); ok {
			continue
		}
		_, err := s.admin(ctx, "cleanup")
		return err
	}
	return nil
}

// seedStaging copies deployed commits missing from the staging
// repository into it (bare -> archive, with ostree pull-local). It is
// best effort: a device whose copy fails still opens, and the agent then
// downloads the whole of its next update.
func (s *Sysroot) seedStaging(ctx context.Context) error {
	deployed, err := s.deployedCommits()
	if err != nil {
		return err
	}
	repo, err := ostree.Open(s.RepoPath())
	if err != nil {
		return err
	}
	for c := range deployed {
		if repo.HasObject(c, ostree.ObjCommit) {
			continue
		}
		if _, err := s.run(ctx, "pull-local", "--repo="+s.RepoPath(), s.SysrootRepoPath(), c.String()); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// Unmark forgets that commit was rolled back from (see sysroot.Unmark).
func (s *Sysroot) Unmark(commit ostree.Checksum) (bool, error) {
	unlock, err := s.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	st, err := s.loadState()
	if err != nil {
		return false, err
	}
	if _, bad := st.Bad[commit.String()]; !bad {
		return false, nil
	}
	delete(st.Bad, commit.String())
	if err := s.saveState(st); err != nil {
		return false, fmt.Errorf("unmark: %w", err)
	}
	return true, nil
}
