package object

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// MirrorStats counts what Mirror did.
type MirrorStats struct {
	Created   int   // objects that were not in the store
	Replaced  int   // mutable files whose content changed
	Unchanged int   // already there with the same content (or immutable and present)
	Bytes     int64 // bytes sent
}

// mirrorSkip are top-level names of a repository directory that are
// never published: work in progress and local state.
var mirrorSkip = map[string]bool{"tmp": true, "state": true, "lock": true}

// Mirror copies the files of the local directory dir (an OSTree
// repository) into dst under prefix, in the order that keeps the store
// consistent for a reader at every moment: first the files immutable
// reports as content-addressed (objects, delta parts), written only when
// absent with If-None-Match: *; then the other mutable files (refs,
// commit metadata, delta superblocks, config); summary.sig and summary
// last. A mutable file is replaced only when its bytes differ, with
// If-Match on the version it compared against, so two mirrors racing
// cannot interleave: the loser gets ErrPrecondition and should run
// again. Names starting with "." (temporary files) and the top-level
// tmp/ and state/ are skipped. Nothing is deleted from dst (pruning the
// bucket is a separate step).
func Mirror(ctx context.Context, dst Store, prefix, dir string, immutable func(rel string) bool) (MirrorStats, error) {
	return MirrorExpecting(ctx, dst, prefix, dir, immutable, nil, nil)
}

// Present remembers immutable files a mirror found in or put into the
// store, so that a later mirror of the same directory soon after (the
// part of a publish done under a lock, after the bulk was copied before
// it) does not ask the store about each again. Safe for concurrent use;
// the zero value is empty. Keep one only as long as nothing deletes from
// the store.
type Present struct {
	mu sync.Mutex
	m  map[string]bool
}

func (p *Present) has(k string) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[k]
}

func (p *Present) add(k string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]bool{}
	}
	p.m[k] = true
}

// MirrorObjects is the first step of Mirror alone: it copies the
// immutable files dst lacks, and changes no mutable file, so it needs no
// lock. present (may be nil) records what is in dst afterwards.
func MirrorObjects(ctx context.Context, dst Store, prefix, dir string, immutable func(rel string) bool, present *Present) (MirrorStats, error) {
	return mirror(ctx, dst, prefix, dir, immutable, nil, present, true)
}

// MirrorExpecting is Mirror for a writer that read the store's mutable
// files earlier (under a lock) and built its copy on them: expect maps a
// path (relative to prefix) to the ETag it read, "" for a file that was
// absent. Such a file is replaced only if the store still holds the
// version expected (If-Match on it, or If-None-Match: * for ""), so a
// writer whose view is stale fails with ErrPrecondition instead of
// overwriting newer files; in particular every local file under refs/
// that is not in expect must be absent from the store. Other mutable
// files are compared and replaced as Mirror does. Immutable files in
// present (may be nil) are taken as stored.
func MirrorExpecting(ctx context.Context, dst Store, prefix, dir string, immutable func(rel string) bool, expect map[string]string, present *Present) (MirrorStats, error) {
	return mirror(ctx, dst, prefix, dir, immutable, expect, present, false)
}

func mirror(ctx context.Context, dst Store, prefix, dir string, immutable func(rel string) bool, expect map[string]string, present *Present, objectsOnly bool) (MirrorStats, error) {
	var st MirrorStats
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, fmt.Errorf("mirror %s: %w", dir, err)
	}
	defer root.Close()
	var fixed, mutable, last []string
	err = fs.WalkDir(root.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := path.Base(p)
		if p != "." && (strings.HasPrefix(base, ".") || (!strings.Contains(p, "/") && mirrorSkip[p])) {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		if CheckKey(prefix+p) != nil {
			return fmt.Errorf("%s: not a storable name", p)
		}
		switch {
		case p == "summary" || p == "summary.sig":
			last = append(last, p)
		case immutable(p):
			fixed = append(fixed, p)
		default:
			mutable = append(mutable, p)
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("mirror %s: %w", dir, err)
	}
	// Immutable files in parallel: most of the bytes, and independent.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	type res struct {
		created bool
		n       int64
	}
	results := make([]res, len(fixed))
	for i, p := range fixed {
		if present.has(p) {
			continue
		}
		g.Go(func() error {
			created, n, err := mirrorFixed(gctx, dst, prefix+p, root, p)
			results[i] = res{created, n}
			if err == nil {
				present.add(p)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return st, fmt.Errorf("mirror %s: %w", dir, err)
	}
	for _, r := range results {
		if r.created {
			st.Created++
			st.Bytes += r.n
		} else {
			st.Unchanged++
		}
	}
	if objectsOnly {
		return st, nil
	}
	// summary.sig before summary (the order ostree writes them).
	if len(last) == 2 {
		last = []string{"summary.sig", "summary"}
	}
	for _, p := range append(mutable, last...) {
		exp, strict := expect[p]
		if expect != nil && strings.HasPrefix(p, "refs/") && !strict {
			strict = true // a ref the writer did not see in the store must not be there
		}
		var want *string
		if strict {
			want = &exp
		}
		changed, created, n, err := mirrorMutable(ctx, dst, prefix+p, root, p, want)
		if err != nil {
			return st, fmt.Errorf("mirror %s: %w", dir, err)
		}
		switch {
		case created:
			st.Created++
		case changed:
			st.Replaced++
		default:
			st.Unchanged++
		}
		st.Bytes += n
	}
	return st, nil
}

func mirrorFixed(ctx context.Context, dst Store, key string, root *os.Root, p string) (bool, int64, error) {
	if _, err := dst.Stat(ctx, key); err == nil {
		return false, 0, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, 0, err
	}
	f, err := root.Open(p)
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, 0, err
	}
	_, err = dst.Put(ctx, key, f, fi.Size(), Condition{IfNoneMatch: true})
	if errors.Is(err, ErrPrecondition) {
		return false, 0, nil // another mirror wrote it: same name, same bytes
	}
	return err == nil, fi.Size(), err
}

// maxMutable bounds a mutable file read whole for comparison (summaries
// of large repositories are a few MiB).
const maxMutable = 256 << 20

// mirrorMutable replaces key with the local file p if they differ. With
// want, the store must hold the version *want names ("" absent).
func mirrorMutable(ctx context.Context, dst Store, key string, root *os.Root, p string, want *string) (changed, created bool, n int64, err error) {
	local, err := readAllLimit(root, p)
	if err != nil {
		return false, false, 0, err
	}
	var c Condition
	r, err := dst.Get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		if want != nil && *want != "" {
			return false, false, 0, fmt.Errorf("%s: %w: removed since it was read", key, ErrPrecondition)
		}
		c.IfNoneMatch = true
	case err != nil:
		return false, false, 0, err
	default:
		remote, rerr := io.ReadAll(io.LimitReader(r, maxMutable+1))
		etag := r.Info().ETag
		r.Close()
		if rerr != nil {
			return false, false, 0, rerr
		}
		if bytes.Equal(remote, local) {
			return false, false, 0, nil
		}
		if want != nil && *want != etag {
			return false, false, 0, fmt.Errorf("%s: %w: it is not the version this copy was built on", key, ErrPrecondition)
		}
		c.IfMatch = etag
	}
	if _, err := dst.Put(ctx, key, bytes.NewReader(local), int64(len(local)), c); err != nil {
		return false, false, 0, err
	}
	return true, c.IfNoneMatch, int64(len(local)), nil
}

func readAllLimit(root *os.Root, p string) ([]byte, error) {
	f, err := root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMutable+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxMutable {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, maxMutable)
	}
	return b, nil
}
