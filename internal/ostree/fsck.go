package ostree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// ObjectRef names one object.
type ObjectRef struct {
	Checksum Checksum
	Type     ObjectType
}

// Reachable lists the objects a commit's tree reaches (not the commit
// itself), each once. Missing objects are an error.
func (r *Repo) Reachable(commit Checksum) ([]ObjectRef, error) {
	cm, err := r.ReadCommit(commit)
	if err != nil {
		return nil, err
	}
	out, err := r.reachableTree(cm.RootTree, cm.RootMeta)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", commit, err)
	}
	return out, nil
}

// reachableTree lists the objects under a root dirtree and dirmeta.
func (r *Repo) reachableTree(rootTree, rootMeta Checksum) ([]ObjectRef, error) {
	var out []ObjectRef
	seen := map[ObjectRef]bool{}
	add := func(o ObjectRef) bool {
		if seen[o] {
			return false
		}
		seen[o] = true
		out = append(out, o)
		return true
	}
	var walk func(tree, meta Checksum) error
	walk = func(tree, meta Checksum) error {
		add(ObjectRef{meta, ObjDirMeta})
		if !add(ObjectRef{tree, ObjDirTree}) {
			return nil
		}
		dt, err := r.ReadDirTree(tree)
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			add(ObjectRef{f.Checksum, ObjFile})
		}
		for _, d := range dt.Dirs {
			if err := walk(d.Tree, d.Meta); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(rootTree, rootMeta); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckComplete verifies that the commit and every object its tree reaches
// are stored. Metadata objects are read and hash-checked on the way;
// content objects are only checked for presence (fsck reads them fully).
func (r *Repo) CheckComplete(commit Checksum) error {
	cm, err := r.ReadCommit(commit)
	if err != nil {
		return err
	}
	if err := r.CheckTreeComplete(cm.RootTree, cm.RootMeta); err != nil {
		return fmt.Errorf("commit %s: %w", commit, err)
	}
	return nil
}

// CheckTreeComplete is CheckComplete for a root dirtree and dirmeta, for
// checking a commit before it is made visible.
//
// It walks the tree depth-first and checks each object as it is reached,
// remembering only the directories seen: its memory grows with the
// number of distinct directories, not of files (a file reached twice is
// looked up twice).
func (r *Repo) CheckTreeComplete(rootTree, rootMeta Checksum) error {
	seen := map[ObjectRef]bool{}
	var walk func(tree, meta Checksum) error
	walk = func(tree, meta Checksum) error {
		if m := (ObjectRef{meta, ObjDirMeta}); !seen[m] {
			seen[m] = true
			if _, err := r.ReadDirMeta(meta); err != nil {
				return err
			}
		}
		t := ObjectRef{tree, ObjDirTree}
		if seen[t] {
			return nil
		}
		seen[t] = true
		dt, err := r.ReadDirTree(tree)
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			if !r.HasObject(f.Checksum, ObjFile) {
				return &ObjectError{f.Checksum, ObjFile, ErrNotFound}
			}
		}
		for _, d := range dt.Dirs {
			if err := walk(d.Tree, d.Meta); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(rootTree, rootMeta)
}

// FsckOptions tunes Fsck.
type FsckOptions struct {
	// VerifyCommit, when set, is called for every commit reached from a ref
	// with the commit bytes and its detached metadata (signature checks).
	VerifyCommit func(c Checksum, commit []byte, meta Metadata) error
	// Progress, when set, is called with the number of objects checked so
	// far and the total.
	Progress func(done, total int)
}

// FsckReport is what Fsck found.
type FsckReport struct {
	Refs, Commits, Objects int
	// Errors lists every problem, one per object or ref.
	Errors []error
}

// Fsck checks every ref, every commit reachable from a ref through parents
// (a missing parent is normal: history may be shallow), every object those
// trees reach, and every loose object on disk, fully decompressing content.
func (r *Repo) Fsck(ctx context.Context, opts FsckOptions) (*FsckReport, error) {
	rep := &FsckReport{}
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		rep.Errors = append(rep.Errors, err)
		mu.Unlock()
	}
	refs, err := r.ListRefs()
	if err != nil {
		return nil, err
	}
	rep.Refs = len(refs)
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	seenCommit := map[Checksum]bool{}
	for _, name := range names {
		c := refs[name]
		if !r.HasObject(c, ObjCommit) {
			fail(fmt.Errorf("ref %s: %w", name, &ObjectError{c, ObjCommit, ErrNotFound}))
			continue
		}
		for first := true; !c.IsZero() && !seenCommit[c]; first = false {
			if !first && !r.HasObject(c, ObjCommit) {
				break // shallow history
			}
			seenCommit[c] = true
			b, err := r.ReadMetadata(c, ObjCommit)
			if err != nil {
				fail(fmt.Errorf("ref %s: %w", name, err))
				break
			}
			cm, err := ParseCommit(b)
			if err != nil {
				fail(fmt.Errorf("ref %s: %w", name, &ObjectError{c, ObjCommit, err}))
				break
			}
			rep.Commits++
			if first && opts.VerifyCommit != nil {
				md, err := r.ReadCommitMeta(c)
				if err == nil {
					err = opts.VerifyCommit(c, b, md)
				}
				if err != nil {
					fail(fmt.Errorf("ref %s: commit %s: %w", name, c, err))
				}
			}
			if err := r.CheckComplete(c); err != nil {
				fail(fmt.Errorf("ref %s: %w", name, err))
			}
			c = cm.Parent
		}
	}

	// Every loose object, reachable or not, must be intact.
	var objs []ObjectRef
	root := filepath.Join(r.path, "objects")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			return nil // temp files of other tools, never objects
		}
		rel, _ := filepath.Rel(root, p)
		o, ok := parseObjectPath(filepath.ToSlash(rel))
		if !ok {
			fail(fmt.Errorf("stray file objects/%s", rel))
			return nil
		}
		if o.Type != ObjCommitMeta {
			objs = append(objs, o)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("fsck: %w", err)
	}
	rep.Objects = len(objs)
	var done int
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, o := range objs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			var err error
			switch o.Type {
			case ObjFile:
				_, err = r.VerifyContent(o.Checksum)
			case ObjCommit:
				_, err = r.ReadCommit(o.Checksum)
			case ObjDirTree:
				_, err = r.ReadDirTree(o.Checksum)
			case ObjDirMeta:
				_, err = r.ReadDirMeta(o.Checksum)
			}
			if err != nil {
				fail(err)
			}
			if opts.Progress != nil {
				mu.Lock()
				done++
				opts.Progress(done, len(objs))
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	return rep, nil
}

// parseObjectPath turns "XX/<62hex>.ext" into an object reference.
func parseObjectPath(rel string) (ObjectRef, bool) {
	dir, file, ok := strings.Cut(rel, "/")
	if !ok || len(dir) != 2 {
		return ObjectRef{}, false
	}
	name, ext, ok := strings.Cut(file, ".")
	if !ok {
		return ObjectRef{}, false
	}
	t, ok := objectTypeFromExt(ext)
	if !ok {
		return ObjectRef{}, false
	}
	c, err := ParseChecksum(dir + name)
	if err != nil {
		return ObjectRef{}, false
	}
	return ObjectRef{c, t}, true
}
