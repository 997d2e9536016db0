package ostreeadmin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// keepRef is the ref (in the sysroot's repository and in the staging
// repository) that keeps commit alive against ostree's pruning.
func keepRef(c ostree.Checksum) string { return originGroup + "/" + c.String() }

// Deploy copies commit from repo (the staging repository the agent pulled
// into) into the sysroot's repository and makes it a deployment that is
// not the default:
//
//	ostree pull-local --untrusted --repo=SYSROOT/ostree/repo STAGING COMMIT
//	ostree admin deploy --sysroot=SYSROOT --os=STATEROOT --retain --not-as-default \
//	    --origin-file=F [--karg=...] COMMIT
//
// ostree checks the kernel out to /boot, merges /etc with the default
// deployment's and adds a boot entry after the default one. On an empty
// stateroot the deployment is the default at once (ostree has nothing
// else to boot). A commit marked bad is refused with sysroot.ErrBadCommit;
// one missing from repo with its error, before anything changes. A failed
// deploy is cleaned up with `ostree admin cleanup`.
func (s *Sysroot) Deploy(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, origin sysroot.Origin) (sysroot.Deployment, error) {
	unlock, before, origin, err := s.prepareDeploy(ctx, repo, commit, origin)
	if err != nil {
		return sysroot.Deployment{}, err
	}
	defer unlock()
	name, err := s.deployCommit(ctx, commit, originFile(origin), false)
	if err != nil {
		return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	if _, ok := find(before, name); ok {
		return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w: ostree reused deployment %s", commit, sysroot.ErrCorrupt, name)
	}
	return s.load(name)
}

// prepareDeploy is what Deploy and DeploySwitch do before ostree admin
// deploy: it takes the lock (the caller releases it with unlock), refuses
// a bad or incomplete commit, and copies the commit into the sysroot's
// repository. It returns the deployments as they were.
func (s *Sysroot) prepareDeploy(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, origin sysroot.Origin) (unlock func(), before []item, _ sysroot.Origin, err error) {
	if repo == nil {
		return nil, nil, origin, fmt.Errorf("deploy %s: no repository", commit)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, origin, err
	}
	release, err := s.lock()
	if err != nil {
		return nil, nil, origin, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	st, err := s.loadState()
	if err != nil {
		return nil, nil, origin, err
	}
	if _, bad := st.Bad[commit.String()]; bad {
		return nil, nil, origin, fmt.Errorf("deploy %s: %w", commit, sysroot.ErrBadCommit)
	}
	if _, err := repo.ReadCommit(commit); err != nil {
		return nil, nil, origin, fmt.Errorf("deploy %s: not in %s: %w", commit, repo.Path(), err)
	}
	if err := repo.CheckComplete(commit); err != nil {
		return nil, nil, origin, fmt.Errorf("deploy %s: incomplete in %s: %w", commit, repo.Path(), err)
	}
	if before, err = s.readAll(); err != nil {
		return nil, nil, origin, fmt.Errorf("deploy %s: %w", commit, err)
	}
	origin.Commit = commit.String()
	if origin.Created.IsZero() {
		origin.Created = s.Now().UTC()
	}
	if _, err := s.run(ctx, "pull-local", "--untrusted", "--repo="+s.SysrootRepoPath(), repo.Path(), commit.String()); err != nil {
		return nil, nil, origin, fmt.Errorf("deploy %s: copy into the sysroot repository: %w", commit, err)
	}
	return release, before, origin, nil
}

// DeploySwitch is Deploy and Switch in one: commit becomes a new
// deployment that is the default at once, with one `ostree admin deploy`
// (the default one, one checkout) instead of Deploy's staged checkout
// plus Switch's undeploy and second checkout. Under TCG in the VM test
// that pair cost about two minutes of an update's two and a half.
//
// As in Switch, the pending boot and the previous default are recorded
// and the boot counter armed before ostree runs; then recorded(name) is
// called with the name the deployment will have, so the agent can save
// its own state before the default moves. If ostree picks another name,
// the state and recorded get it afterwards. A crash anywhere leaves either
// the old default with a pending boot naming a deployment that is not
// current (BootAttempt clears it) or the new default on trial.
func (s *Sysroot) DeploySwitch(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, origin sysroot.Origin, recorded func(name string) error) (sysroot.Deployment, error) {
	unlock, before, origin, err := s.prepareDeploy(ctx, repo, commit, origin)
	if err != nil {
		return sysroot.Deployment{}, err
	}
	defer unlock()
	st, err := s.loadState()
	if err != nil {
		return sysroot.Deployment{}, err
	}
	serial, err := s.nextSerial(commit, "")
	if err != nil {
		return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	want := commit.String() + "." + strconv.Itoa(serial)
	if ours := s.ours(before); len(ours) > 0 {
		tries := s.Tries
		if tries <= 0 {
			tries = sysroot.DefaultBootTries
		}
		st.Pending, st.TriesLeft, st.Previous = want, tries, ours[0].name
		if err := s.saveState(st); err != nil {
			return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
		}
		if err := s.armBootCounter(tries); err != nil { // bootcount.go
			return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
		}
	}
	if err := recorded(want); err != nil {
		return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	name, err := s.deployCommit(ctx, commit, originFile(origin), true)
	if err != nil {
		return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	if _, ok := find(before, name); ok {
		return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w: ostree reused deployment %s", commit, sysroot.ErrCorrupt, name)
	}
	all, err := s.readAll()
	if err != nil {
		return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	if ours := s.ours(all); len(ours) == 0 || ours[0].name != name {
		return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w: %s is not the default after ostree admin deploy", commit, sysroot.ErrCorrupt, name)
	}
	if name != want {
		if st.Pending == want {
			st.Pending = name
			if err := s.saveState(st); err != nil {
				return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
			}
		}
		if err := recorded(name); err != nil {
			return sysroot.Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
		}
	}
	return s.load(name)
}

// originFile renders the .origin ostree stores with the deployment: the
// refspec pins the commit (ostree admin upgrade is not how MxOS updates),
// the mxos-updater group carries the agent's origin.
func originFile(o sysroot.Origin) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "[origin]\nrefspec=%s\n\n[%s]\n", o.Commit, originGroup)
	if o.Ref != "" {
		fmt.Fprintf(&b, "ref=%s\n", escapeKeyFile(o.Ref))
	}
	if o.Version != "" {
		fmt.Fprintf(&b, "version=%s\n", escapeKeyFile(o.Version))
	}
	fmt.Fprintf(&b, "created=%s\n", o.Created.UTC().Format(time.RFC3339Nano))
	return []byte(b.String())
}

// deployCommit runs ostree admin deploy (--retain: this package, not
// ostree, decides what to remove) and returns the new deployment's name:
// the one of commit with the highest serial, as ostree allocates serials.
func (s *Sysroot) deployCommit(ctx context.Context, commit ostree.Checksum, origin []byte, asDefault bool) (string, error) {
	of := filepath.Join(s.Root(), "origin.tmp")
	if err := os.WriteFile(of, origin, 0o644); err != nil {
		return "", err
	}
	defer os.Remove(of)
	args := []string{"--os=" + s.stateroot, "--retain", "--origin-file=" + of}
	if !asDefault {
		args = append(args, "--not-as-default")
	}
	for _, k := range s.kargs {
		args = append(args, "--karg="+k)
	}
	if _, err := s.admin(ctx, "deploy", append(args, commit.String())...); err != nil {
		// ostree leaves the half-made deployment directory behind.
		if ctx.Err() == nil {
			s.admin(context.WithoutCancel(ctx), "cleanup")
		}
		return "", err
	}
	all, err := s.readAll()
	if err != nil {
		return "", err
	}
	name, best := "", -1
	for _, it := range s.ours(all) {
		if c, n, err := parseName(it.name); err == nil && c == commit && n > best {
			name, best = it.name, n
		}
	}
	if name == "" {
		return "", fmt.Errorf("%w: ostree admin deploy left no boot entry for %s", sysroot.ErrCorrupt, commit)
	}
	return name, nil
}

// nextSerial is the serial ostree gives the next deployment of commit:
// one more than the highest deployment directory of that commit on disk,
// not counting skip.
func (s *Sysroot) nextSerial(commit ostree.Checksum, skip string) (int, error) {
	ents, err := os.ReadDir(s.deployDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	next := 0
	for _, e := range ents {
		if !e.IsDir() || e.Name() == skip {
			continue
		}
		if c, n, err := parseName(e.Name()); err == nil && c == commit && n >= next {
			next = n + 1
		}
	}
	return next, nil
}

// undeploy removes the deployment called name with `ostree admin
// undeploy INDEX`, the index read afresh. ostree also prunes the
// repository of commits no ref or deployment holds.
func (s *Sysroot) undeploy(ctx context.Context, name string) error {
	all, err := s.readAll()
	if err != nil {
		return err
	}
	it, ok := find(s.ours(all), name)
	if !ok {
		return nil
	}
	if name == s.bootedName(all) {
		return fmt.Errorf("undeploy %s: it is the running system", name)
	}
	if _, err := s.admin(ctx, "undeploy", strconv.Itoa(it.index)); err != nil {
		return fmt.Errorf("undeploy %s: %w", name, err)
	}
	return nil
}

func (s *Sysroot) setKeepRef(ctx context.Context, repo string, c ostree.Checksum) error {
	_, err := s.run(ctx, "refs", "--repo="+repo, "--force", "--create="+keepRef(c), c.String())
	return err
}

func (s *Sysroot) deleteKeepRef(ctx context.Context, repo string, c ostree.Checksum) error {
	_, err := s.run(ctx, "refs", "--repo="+repo, "--delete", keepRef(c))
	return err
}

// Switch makes d the default deployment. ostree 2022.7 cannot reorder
// deployments (no `ostree admin set-default`), so Switch re-deploys d's
// commit as the default and removes the staged copy first, so the new
// deployment gets d's serial and name back (unless another deployment of
// the same commit holds a higher serial):
//
//	ostree refs --repo=SYSROOT/ostree/repo --create=mxos-updater/COMMIT COMMIT  (survives the prune)
//	ostree admin undeploy INDEX-OF-d
//	ostree admin deploy --retain --origin-file=d's COMMIT
//
// The pending boot (s.Tries attempts) and the previous default are
// recorded before ostree runs; a crash in between leaves a pending boot
// that does not name the current deployment, which BootAttempt ignores.
// A bad commit is refused; d already the default is a no-op.
func (s *Sysroot) Switch(ctx context.Context, d sysroot.Deployment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, all, err := s.stateAndAll("switch")
	if err != nil {
		return err
	}
	ours := s.ours(all)
	if _, ok := find(ours, d.Name); !ok {
		return fmt.Errorf("switch: %w: %s", sysroot.ErrNoDeployment, d.Name)
	}
	d, err = s.load(d.Name)
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	if _, bad := st.Bad[d.Commit.String()]; bad {
		return fmt.Errorf("switch to %s: %w", d.Name, sysroot.ErrBadCommit)
	}
	if ours[0].name == d.Name {
		return nil
	}
	origin, err := os.ReadFile(d.Path + ".origin")
	if err != nil {
		origin = originFile(d.Origin)
	}
	booted := s.bootedName(all)
	skip := d.Name
	if d.Name == booted { // cannot be undeployed: a second copy is made
		skip = ""
	}
	serial, err := s.nextSerial(d.Commit, skip)
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	tries := s.Tries
	if tries <= 0 {
		tries = sysroot.DefaultBootTries
	}
	st.Pending, st.TriesLeft, st.Previous = d.Commit.String()+"."+strconv.Itoa(serial), tries, ours[0].name
	if err := s.saveState(st); err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	if err := s.armBootCounter(tries); err != nil { // bootcount.go
		return fmt.Errorf("switch to %s: %w", d.Name, err)
	}
	if err := s.setKeepRef(ctx, s.SysrootRepoPath(), d.Commit); err != nil {
		return fmt.Errorf("switch to %s: %w", d.Name, err)
	}
	if skip != "" {
		if err := s.undeploy(ctx, d.Name); err != nil {
			return fmt.Errorf("switch to %s: %w", d.Name, err)
		}
	}
	name, err := s.deployCommit(ctx, d.Commit, origin, true)
	if err != nil {
		return fmt.Errorf("switch to %s: %w", d.Name, err)
	}
	// The deployment ref ostree made now holds the commit.
	if err := s.deleteKeepRef(ctx, s.SysrootRepoPath(), d.Commit); err != nil {
		return fmt.Errorf("switch to %s: %w", d.Name, err)
	}
	all, err = s.readAll()
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	if ours = s.ours(all); len(ours) == 0 || ours[0].name != name {
		return fmt.Errorf("switch to %s: %w: %s is not the default after ostree admin deploy", d.Name, sysroot.ErrCorrupt, name)
	}
	if name != st.Pending {
		st.Pending = name
		if err := s.saveState(st); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
	}
	return nil
}

// Rollback makes the previous deployment the default again and marks the
// abandoned commit bad, so it is never deployed or switched to again.
// The bad mark is written first. When the abandoned deployment is not the
// running system (a test sysroot, or a rollback before rebooting) it is
// undeployed, with any deployment staged between the two:
// `ostree admin undeploy 0` leaves the previous one first. When it is
// running, ostree refuses to undeploy it, so the previous commit is
// re-deployed as the default instead and the abandoned deployment stays
// (as Previous) until a GC after the next boot.
func (s *Sysroot) Rollback(ctx context.Context, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return s.rollbackLocked(ctx, reason)
}

func (s *Sysroot) rollbackLocked(ctx context.Context, reason string) error {
	st, all, err := s.stateAndAll("rollback")
	if err != nil {
		return err
	}
	ours := s.ours(all)
	if len(ours) == 0 {
		return fmt.Errorf("rollback: %w: no current deployment", sysroot.ErrNoDeployment)
	}
	cur, err := s.load(ours[0].name)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	prev, err := s.previous(st, ours)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if _, bad := st.Bad[prev.Commit.String()]; bad {
		return fmt.Errorf("rollback to %s: %w", prev.Name, sysroot.ErrBadCommit)
	}
	if st.Bad == nil {
		st.Bad = map[string]sysroot.BadCommit{}
	}
	if prev.Commit != cur.Commit {
		st.Bad[cur.Commit.String()] = sysroot.BadCommit{Reason: reason, Time: s.Now().UTC()}
	}
	st.Pending, st.TriesLeft = "", 0
	if err := s.saveState(st); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if err := s.disarmBootCounter(); err != nil { // the previous deployment has booted before
		return fmt.Errorf("rollback: %w", err)
	}
	// Deployments staged between the abandoned one and the previous one
	// would otherwise become the default.
	pi, _ := find(ours, prev.Name)
	var between []string
	for _, it := range ours {
		if it.index > ours[0].index && it.index < pi.index {
			between = append(between, it.name)
		}
	}
	booted := s.bootedName(all)
	if cur.Name != booted {
		for _, n := range between {
			if n == booted {
				continue
			}
			if err := s.undeploy(ctx, n); err != nil {
				return fmt.Errorf("rollback: %w", err)
			}
		}
		if err := s.undeploy(ctx, cur.Name); err != nil {
			return fmt.Errorf("rollback: %w", err)
		}
		st.Previous = ""
		return s.saveState(st)
	}
	origin, err := os.ReadFile(prev.Path + ".origin")
	if err != nil {
		origin = originFile(prev.Origin)
	}
	name, err := s.deployCommit(ctx, prev.Commit, origin, true)
	if err != nil {
		return fmt.Errorf("rollback to %s: %w", prev.Name, err)
	}
	st.Previous = cur.Name
	if err := s.saveState(st); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	for _, n := range append(between, prev.Name) {
		if n == booted || n == name {
			continue
		}
		if err := s.undeploy(ctx, n); err != nil {
			return fmt.Errorf("rollback: %w", err)
		}
	}
	return nil
}

// MarkGood ends the pending boot of the current deployment: it stays the
// default and the boot counter is cleared. While another deployment is
// running (the default has not booted yet) it does nothing.
func (s *Sysroot) MarkGood() error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, all, err := s.stateAndAll("")
	if err != nil {
		return err
	}
	cur := ""
	if ours := s.ours(all); len(ours) > 0 {
		cur = ours[0].name
	}
	if b := s.bootedName(all); b != "" && b != cur {
		return nil // the default has not booted yet: nothing to keep
	}
	if err := s.disarmBootCounter(); err != nil { // bootcount.go: bless this boot
		return err
	}
	if st.Pending == "" && st.Booted == cur {
		return nil
	}
	st.Pending, st.TriesLeft, st.Booted = "", 0, cur
	return s.saveState(st)
}

// BootAttempt is called once per boot. It records the booted deployment
// (the running one when the sysroot is the running system's, else the
// default) and, if the default is pending, uses one attempt and returns
// how many remain. A pending deployment booted with no attempts left is
// rolled back (see Rollback): the error is then sysroot.ErrCounterExhausted
// (wrapped). With nothing pending it returns 0.
func (s *Sysroot) BootAttempt() (remaining int, err error) {
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	st, all, err := s.stateAndAll("")
	if err != nil {
		return 0, err
	}
	cur := ""
	if ours := s.ours(all); len(ours) > 0 {
		cur = ours[0].name
	}
	booted := s.bootedName(all)
	if booted == "" {
		booted = cur
	}
	if fell, err := s.fallBack(st, cur, booted); fell || err != nil { // bootcount.go
		return 0, err
	}
	if st.Pending == "" || st.Pending != cur { // nothing pending, or a Switch that never completed
		st.Pending, st.TriesLeft, st.Booted = "", 0, booted
		if err := s.disarmBootCounter(); err != nil {
			return 0, err
		}
		return 0, s.saveState(st)
	}
	if st.TriesLeft <= 0 {
		if err := s.rollbackLocked(context.Background(), fmt.Sprintf("boot counter exhausted for %s", cur)); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("boot %s: %w", cur, sysroot.ErrCounterExhausted)
	}
	st.TriesLeft--
	st.Booted = booted
	if err := s.saveState(st); err != nil {
		return 0, err
	}
	return st.TriesLeft, nil
}

// GC undeploys this stateroot's deployments other than the default, the
// previous one (unless rolled back from), the booted one, those made after the default (staged for
// a later switch; never a bad commit) and the keep newest others; then runs `ostree admin
// cleanup` (which prunes the sysroot's repository), drops the keep refs
// of commits no longer deployed, and prunes the staging repository down
// to its refs and the deployed commits (`ostree prune --refs-only
// --depth=0`).
func (s *Sysroot) GC(ctx context.Context, keep int) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, all, err := s.stateAndAll("gc")
	if err != nil {
		return err
	}
	ours := s.ours(all)
	if len(ours) == 0 {
		return nil
	}
	cur, err := s.load(ours[0].name)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	protect := map[string]bool{cur.Name: true, st.Booted: true, s.bootedName(all): true}
	if prev, err := s.previous(st, ours); err == nil {
		if _, bad := st.Bad[prev.Commit.String()]; !bad { // not a rollback target any more
			protect[prev.Name] = true
		}
	}
	var others []sysroot.Deployment
	for _, it := range ours {
		if protect[it.name] {
			continue
		}
		d, err := s.load(it.name)
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		if _, bad := st.Bad[d.Commit.String()]; !bad && d.Origin.Created.After(cur.Origin.Created) {
			continue // staged
		}
		others = append(others, d)
	}
	sort.SliceStable(others, func(i, j int) bool { return others[i].Origin.Created.Before(others[j].Origin.Created) })
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
		if err := s.undeploy(ctx, d.Name); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
	}
	if err := s.dropKeepRefs(ctx); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if _, err := s.admin(ctx, "cleanup"); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if err := s.pruneStaging(ctx); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return nil
}

// deployedCommits returns the commits of this stateroot's deployments.
func (s *Sysroot) deployedCommits() (map[ostree.Checksum]bool, error) {
	all, err := s.readAll()
	if err != nil {
		return nil, err
	}
	out := map[ostree.Checksum]bool{}
	for _, it := range s.ours(all) {
		if c, _, err := parseName(it.name); err == nil {
			out[c] = true
		}
	}
	return out, nil
}

// keepRefs lists the mxos-updater/<commit> refs of a repository.
func (s *Sysroot) keepRefs(ctx context.Context, repo string) (map[ostree.Checksum]bool, error) {
	out, err := s.run(ctx, "refs", "--repo="+repo, "--list", originGroup)
	if err != nil {
		return nil, err
	}
	refs := map[ostree.Checksum]bool{}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimPrefix(strings.TrimSpace(l), originGroup+"/")
		if c, err := ostree.ParseChecksum(l); err == nil {
			refs[c] = true
		}
	}
	return refs, nil
}

// dropKeepRefs removes keep refs a crashed Switch left in the sysroot's
// repository.
func (s *Sysroot) dropKeepRefs(ctx context.Context) error {
	refs, err := s.keepRefs(ctx, s.SysrootRepoPath())
	if err != nil {
		return err
	}
	for c := range refs {
		if err := s.deleteKeepRef(ctx, s.SysrootRepoPath(), c); err != nil {
			return err
		}
	}
	return nil
}

// pruneStaging keeps, in the staging repository, the commits the pull
// refs name and the deployed ones (the agent reads the running commit
// there, and pulls only objects it lacks).
func (s *Sysroot) pruneStaging(ctx context.Context) error {
	deployed, err := s.deployedCommits()
	if err != nil {
		return err
	}
	repo, err := ostree.Open(s.RepoPath())
	if err != nil {
		return err
	}
	refs, err := s.keepRefs(ctx, s.RepoPath())
	if err != nil {
		return err
	}
	for c := range deployed {
		if !refs[c] && repo.HasObject(c, ostree.ObjCommit) {
			if err := s.setKeepRef(ctx, s.RepoPath(), c); err != nil {
				return err
			}
		}
	}
	for c := range refs {
		if !deployed[c] {
			if err := s.deleteKeepRef(ctx, s.RepoPath(), c); err != nil {
				return err
			}
		}
	}
	if _, err := s.run(ctx, "prune", "--repo="+s.RepoPath(), "--refs-only", "--depth=0"); err != nil {
		return err
	}
	return nil
}
