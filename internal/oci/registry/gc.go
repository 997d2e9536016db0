package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// GCStats counts what a collection removed.
type GCStats struct {
	Repositories int   `json:"repositories"` // repositories examined
	Manifests    int   `json:"manifests"`    // manifests removed
	Tags         int   `json:"tags"`         // attachment tags removed with their subject
	Links        int   `json:"links"`        // blob links removed from repositories
	Blobs        int   `json:"blobs"`        // blobs removed from the store
	BlobBytes    int64 `json:"blobBytes"`
	Uploads      int   `json:"uploads"` // expired upload sessions removed
}

// attachTagRE matches the tags that belong to another manifest rather
// than name a release: sigstore attachments (sha256-<hex>.sig, .att,
// .sbom) and the referrers tag schema (sha256-<hex>).
var attachTagRE = regexp.MustCompile(`^(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})(\.sig|\.att|\.sbom)?$`)

// attachSubject returns the manifest an attachment tag belongs to.
func attachSubject(tag string) (digest.Digest, bool) {
	m := attachTagRE.FindStringSubmatch(tag)
	if m == nil {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(m[1]), m[2])
	return d, storage.Validate(d) == nil
}

// GC removes what no live manifest needs. Per repository, the live
// manifests are: tagged manifests (other than attachment tags), manifests
// younger than the grace period, the children of live indexes, and,
// repeatedly, every manifest whose subject is live or whose attachment tag
// (sha256-<hex>.sig, sha256-<hex>) names a live manifest. Other manifests
// are removed with their tags and referrer entries. Then blob links no
// live manifest uses are removed from each repository, and blobs no live
// manifest of any repository uses are removed from the store. Links and
// blobs younger than the grace period are kept whatever their state, so a
// push in progress (blobs first, manifest last) is never collected, and
// expired upload sessions are removed.
//
// Writes that make content reachable wait while GC runs; reads do not.
func (s *Store) GC(ctx context.Context) (GCStats, error) {
	s.gc.Lock()
	defer s.gc.Unlock()
	var st GCStats
	now := time.Now()
	grace := s.opts.GCGrace
	liveBlobs := map[digest.Digest]bool{}
	repos, err := s.listRepos()
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	for _, name := range repos {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		st.Repositories++
		if err := s.gcRepo(name, now, grace, liveBlobs, &st); err != nil {
			return st, fmt.Errorf("gc %s: %w", name, err)
		}
	}
	// The removed tags, manifest links and blob links are made durable
	// before any blob goes: otherwise a power cut could keep a link
	// and lose the blob it names. One sync of the file system, through
	// repos/ (the e2e crash-point test stops the server there by path).
	if st.Tags+st.Manifests+st.Links > 0 {
		if err := storage.Syncfs(filepath.Join(s.dir, "repos")); err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
	}
	err = s.blobs.Walk(func(d digest.Digest, fi fs.FileInfo) error {
		if liveBlobs[d] || now.Sub(fi.ModTime()) < grace {
			return nil
		}
		if err := s.blobs.Delete(d); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		st.Blobs++
		st.BlobBytes += fi.Size()
		return ctx.Err()
	})
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	n, err := s.expireUploads(now)
	st.Uploads = n
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	return st, nil
}

// listRepos finds every repository directory (one holding _layers,
// _manifests or _tags).
func (s *Store) listRepos() ([]string, error) {
	root := filepath.Join(s.dir, "repos")
	var repos []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		base := d.Name()
		if strings.HasPrefix(base, "_") {
			if base == "_layers" || base == "_manifests" || base == "_tags" {
				rel, err := filepath.Rel(root, filepath.Dir(p))
				if err == nil {
					name := filepath.ToSlash(rel)
					if len(repos) == 0 || repos[len(repos)-1] != name {
						repos = append(repos, name)
					}
				}
			}
			return filepath.SkipDir
		}
		return nil
	})
	return repos, err
}

type gcManifest struct {
	meta     manifestMeta
	modTime  time.Time
	children []digest.Digest // index children
	blobs    []digest.Digest // config, layers and its own bytes
	unread   error           // why its body could not be read, if so
}

func (s *Store) gcRepo(name string, now time.Time, grace time.Duration, liveBlobs map[digest.Digest]bool, st *GCStats) error {
	manifests := map[digest.Digest]*gcManifest{}
	err := s.eachLink(name, "_manifests", func(_ string, d digest.Digest, e fs.DirEntry) {
		if storage.Validate(d) != nil {
			return
		}
		fi, err := e.Info()
		if err != nil {
			return
		}
		meta, err := s.readManifestMeta(name, d)
		if err != nil {
			return
		}
		gm := &gcManifest{meta: meta, modTime: fi.ModTime(), blobs: []digest.Digest{d}}
		body, err := s.readBlob(d, MaxManifestSize)
		if err == nil {
			var m *manifestInfo
			if m, err = parseManifest("", body); err == nil {
				for _, c := range m.Manifests {
					gm.children = append(gm.children, c.Digest)
				}
				if m.Config != nil {
					gm.blobs = append(gm.blobs, m.Config.Digest)
				}
				for _, l := range m.Layers {
					gm.blobs = append(gm.blobs, l.Digest)
				}
			}
		}
		gm.unread = err
		manifests[d] = gm
	})
	if err != nil {
		return err
	}
	tags, err := s.tags(name)
	if err != nil && !isNotFound(err) {
		return err
	}
	tagTarget := map[string]digest.Digest{}
	// attachments[subject] lists manifests attached by tag or by subject.
	attachments := map[digest.Digest][]digest.Digest{}
	var roots []digest.Digest
	for _, t := range tags {
		d, err := s.readTag(name, t)
		if err != nil {
			continue
		}
		tagTarget[t] = d
		if subj, ok := attachSubject(t); ok {
			fi, err := os.Stat(s.tagFile(name, t))
			if err == nil && now.Sub(fi.ModTime()) < grace {
				roots = append(roots, d)
			}
			attachments[subj] = append(attachments[subj], d)
			continue
		}
		roots = append(roots, d)
	}
	for d, gm := range manifests {
		if now.Sub(gm.modTime) < grace {
			roots = append(roots, d)
		}
		if gm.meta.Subject != "" {
			attachments[gm.meta.Subject] = append(attachments[gm.meta.Subject], d)
		}
	}
	live := map[digest.Digest]bool{}
	for len(roots) > 0 {
		d := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		if live[d] {
			continue
		}
		gm, ok := manifests[d]
		if !ok {
			continue
		}
		if gm.unread != nil {
			// Its blobs are unknown: collecting now could delete them.
			return fmt.Errorf("manifest %s cannot be read, not collecting: %w", d, gm.unread)
		}
		live[d] = true
		roots = append(roots, gm.children...)
		roots = append(roots, attachments[d]...)
	}
	// Attachment tags whose manifest is gone.
	for t, d := range tagTarget {
		if _, isAttach := attachSubject(t); isAttach && !live[d] {
			if err := os.Remove(s.tagFile(name, t)); err == nil {
				st.Tags++
			}
		}
	}
	repoBlobs := map[digest.Digest]bool{}
	for d, gm := range manifests {
		if live[d] {
			for _, b := range gm.blobs {
				repoBlobs[b] = true
				liveBlobs[b] = true
			}
			continue
		}
		if err := s.deleteManifest(name, d); err != nil && !isNotFound(err) {
			return err
		}
		st.Manifests++
	}
	// Blob links nothing live uses.
	return s.eachLink(name, "_layers", func(dir string, d digest.Digest, e fs.DirEntry) {
		if repoBlobs[d] {
			return
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < grace {
			return
		}
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			st.Links++
		}
	})
}

// eachLink calls fn for each entry of repository name's sub directory
// (_manifests or _layers) under every digest algorithm, with the
// algorithm's directory and the digest the entry names; a missing
// directory has none.
func (s *Store) eachLink(name, sub string, fn func(dir string, d digest.Digest, e fs.DirEntry)) error {
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		dir := filepath.Join(s.repoDir(name), sub, string(alg))
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			fn(dir, digest.NewDigestFromEncoded(alg, e.Name()), e)
		}
	}
	return nil
}

// readBlob reads a small blob whole.
func (s *Store) readBlob(d digest.Digest, max int64) ([]byte, error) {
	f, err := s.blobs.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max+1))
}
