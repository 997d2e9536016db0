package sysroot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Switch makes d the default deployment: previous is pointed at the old
// current and current at d, each by an atomic symlink rename, and a
// pending boot with s.Tries attempts is recorded. A bad commit is refused.
func (s *Sysroot) Switch(ctx context.Context, d Deployment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	d, err = s.load(d.Name)
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	st, err := s.loadState()
	if err != nil {
		return err
	}
	if _, bad := st.Bad[d.Commit.String()]; bad {
		return fmt.Errorf("switch to %s: %w", d.Name, ErrBadCommit)
	}
	old, err := s.linkTarget("current")
	if err != nil {
		return err
	}
	if old == d.Name {
		return nil
	}
	tries := s.Tries
	if tries <= 0 {
		tries = DefaultBootTries
	}
	st.Pending, st.TriesLeft = d.Name, tries
	if err := s.saveState(st); err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	if old != "" {
		if err := s.setLink("previous", old); err != nil {
			return fmt.Errorf("switch: previous: %w", err)
		}
	}
	if err := s.setLink("current", d.Name); err != nil {
		return fmt.Errorf("switch: current: %w", err)
	}
	return nil
}

// Rollback makes the previous deployment the default again (current and
// previous swap) and marks the abandoned commit bad, so it is never
// deployed or switched to again.
func (s *Sysroot) Rollback(ctx context.Context, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return s.rollbackLocked(reason)
}

func (s *Sysroot) rollbackLocked(reason string) error {
	cur, err := s.linked("current")
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	prev, err := s.linked("previous")
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if prev.Name == cur.Name {
		return fmt.Errorf("rollback: %w: previous is the current deployment", ErrNoDeployment)
	}
	st, err := s.loadState()
	if err != nil {
		return err
	}
	if _, bad := st.Bad[prev.Commit.String()]; bad { // previous is what was rolled back from
		return fmt.Errorf("rollback to %s: %w", prev.Name, ErrBadCommit)
	}
	if st.Bad == nil {
		st.Bad = map[string]BadCommit{}
	}
	if prev.Commit != cur.Commit {
		st.Bad[cur.Commit.String()] = BadCommit{Reason: reason, Time: s.Now().UTC()}
	}
	st.Pending, st.TriesLeft = "", 0
	if err := s.saveState(st); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if err := s.setLink("current", prev.Name); err != nil {
		return fmt.Errorf("rollback: current: %w", err)
	}
	if err := s.setLink("previous", cur.Name); err != nil {
		return fmt.Errorf("rollback: previous: %w", err)
	}
	return nil
}

// MarkGood ends the pending boot of the current deployment: it stays the
// default and the boot counter is cleared.
func (s *Sysroot) MarkGood() error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.loadState()
	if err != nil {
		return err
	}
	cur, err := s.linkTarget("current")
	if err != nil {
		return err
	}
	if st.Pending == "" && st.Booted == cur {
		return nil
	}
	st.Pending, st.TriesLeft, st.Booted = "", 0, cur
	return s.saveState(st)
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

// BootAttempt is called once per boot. It records the current deployment
// as booted and, if it is pending, uses one attempt and returns how many
// remain. A pending deployment booted with no attempts left is rolled
// back: the error is then ErrCounterExhausted (wrapped), and the next
// boot uses the previous deployment. With nothing pending it returns 0.
func (s *Sysroot) BootAttempt() (remaining int, err error) {
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	st, err := s.loadState()
	if err != nil {
		return 0, err
	}
	cur, err := s.linkTarget("current")
	if err != nil {
		return 0, err
	}
	if st.Pending != cur { // nothing pending, or a Switch that never completed
		st.Pending, st.TriesLeft, st.Booted = "", 0, cur
		return 0, s.saveState(st)
	}
	if st.TriesLeft <= 0 {
		if err := s.rollbackLocked(fmt.Sprintf("boot counter exhausted for %s", cur)); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("boot %s: %w", cur, ErrCounterExhausted)
	}
	st.TriesLeft--
	st.Booted = cur
	if err := s.saveState(st); err != nil {
		return 0, err
	}
	return st.TriesLeft, nil
}

// GC removes deployments other than current, previous, the booted one,
// those made after current (staged for a later switch) and the keep newest
// others, then objects-cache files no deployment links any more.
func (s *Sysroot) GC(ctx context.Context, keep int) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := s.linkTarget("current")
	if err != nil {
		return err
	}
	prev, err := s.linkTarget("previous")
	if err != nil {
		return err
	}
	st, err := s.loadState()
	if err != nil {
		return err
	}
	all, err := s.List()
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	var curCreated time.Time
	for _, d := range all {
		if d.Name == cur {
			curCreated = d.Origin.Created
		}
	}
	var others []Deployment
	for _, d := range all {
		staged := !curCreated.IsZero() && d.Origin.Created.After(curCreated)
		if d.Name != cur && d.Name != prev && d.Name != st.Booted && !staged {
			others = append(others, d)
		}
	}
	// List is oldest first; keep the newest keep.
	if keep > 0 {
		if keep >= len(others) {
			others = nil
		} else {
			others = others[:len(others)-keep]
		}
	}
	for _, d := range others {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Remove the directory first: a crash leaves an orphan .origin,
		// which Open deletes.
		tmp := d.Path + ".tmp-gc"
		if err := os.Rename(d.Path, tmp); err != nil {
			return fmt.Errorf("gc %s: %w", d.Name, err)
		}
		if err := removeTree(tmp); err != nil {
			return fmt.Errorf("gc %s: %w", d.Name, err)
		}
		if err := os.Remove(d.Path + ".origin"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("gc %s: %w", d.Name, err)
		}
	}
	if err := storage.SyncDir(s.deployDir()); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	var dirs []string
	err = filepath.WalkDir(s.cacheDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != s.cacheDir() {
				dirs = append(dirs, p)
			}
			return ctx.Err()
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok && sys.Nlink <= 1 || strings.HasPrefix(d.Name(), ".tmp-") {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: cache: %w", err)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		os.Remove(d) // only succeeds when empty
	}
	return s.pruneRepo(ctx)
}

// pruneRepo removes from the local repository what no remaining
// deployment and no ref (the newest pull) reaches, so the store does not
// grow by a release per update. Deployments do not use the repository's
// files (their files are links into the checkout cache), so a prune never
// touches a deployment.
func (s *Sysroot) pruneRepo(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.RepoPath(), "config")); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	repo, err := ostree.Open(s.RepoPath())
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	left, err := s.List()
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	keep := make([]ostree.Checksum, 0, len(left))
	for _, d := range left {
		keep = append(keep, d.Commit)
	}
	if _, err := repo.Prune(ctx, keep); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return nil
}

// Unmark forgets that commit was rolled back from, so it may be installed
// again (`mxos-updater unmark`, after a rollback made by hand). It reports
// whether the commit was marked. It does not change any deployment.
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
