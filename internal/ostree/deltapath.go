package ostree

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
)

// This file owns where static deltas live in the repository and how the
// summary and the delta indexes list them. Their contents (superblock and
// parts) are package delta's; here a delta is a directory with a
// superblock file:
//
//	deltas/<T[0:2]>/<T[2:]>/superblock            from scratch to T
//	deltas/<F[0:2]>/<F[2:]>-<T>/superblock        from F to T
//	delta-indexes/<T[0:2]>/<T[2:]>.index          deltas ending at T
//
// F and T are commit checksums in libostree's "modified base64" (standard
// alphabet, no padding, '/' written '_'). In the summary and the indexes a
// delta is named in hex: "FROM-TO" or "TO".

// Summary keys of static deltas (libostree ostree-repo-private.h and
// ostree-repo-static-delta-private.h).
const (
	SummaryStaticDeltas  = "ostree.static-deltas"
	summaryIndexedDeltas = "ostree.summary.indexed-deltas"
)

// DeltaID names one static delta; From is zero for a delta from scratch.
type DeltaID struct {
	From, To Checksum
}

// Name is the delta's name in the summary and the indexes.
func (d DeltaID) Name() string {
	if d.From.IsZero() {
		return d.To.String()
	}
	return d.From.String() + "-" + d.To.String()
}

// ParseDeltaName parses "FROM-TO" or "TO" (hex).
func ParseDeltaName(s string) (DeltaID, error) {
	var d DeltaID
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		to, from = from, ""
	}
	var err error
	if d.To, err = ParseChecksum(to); err != nil {
		return d, fmt.Errorf("delta name %q: %w", truncate(s), err)
	}
	if from != "" {
		if d.From, err = ParseChecksum(from); err != nil {
			return d, fmt.Errorf("delta name %q: %w", truncate(s), err)
		}
	}
	return d, nil
}

func b64(c Checksum) string {
	return strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(c[:]), "/", "_")
}

func fromB64(s string) (Checksum, bool) {
	var c Checksum
	if len(s) != 43 {
		return c, false
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(strings.ReplaceAll(s, "_", "/"))
	if err != nil || len(b) != 32 {
		return c, false
	}
	copy(c[:], b)
	return c, b64(c) == s
}

// Dir is the delta's directory relative to the repository, with '/'.
func (d DeltaID) Dir() string {
	t := b64(d.To)
	if d.From.IsZero() {
		return "deltas/" + t[:2] + "/" + t[2:]
	}
	f := b64(d.From)
	return "deltas/" + f[:2] + "/" + f[2:] + "-" + t
}

// SuperblockPath is the superblock's path relative to the repository.
func (d DeltaID) SuperblockPath() string { return d.Dir() + "/superblock" }

// PartPath is the path of part i relative to the repository.
func (d DeltaID) PartPath(i int) string { return fmt.Sprintf("%s/%d", d.Dir(), i) }

// CommitMetaKey is the superblock metadata key carrying the detached
// metadata (signatures) of the target commit.
func (d DeltaID) CommitMetaKey() string { return d.Dir() + "/commitmeta" }

// IndexPath is the path of the delta index of commit to.
func IndexPath(to Checksum) string {
	t := b64(to)
	return "delta-indexes/" + t[:2] + "/" + t[2:] + ".index"
}

// parseDeltaDir parses a path under deltas/ ("XX/REST").
func parseDeltaDir(first, rest string) (DeltaID, bool) {
	var d DeltaID
	if f, t, ok := strings.Cut(rest, "-"); ok {
		from, ok1 := fromB64(first + f)
		to, ok2 := fromB64(t)
		if !ok1 || !ok2 {
			return d, false
		}
		d.From, d.To = from, to
		return d, true
	}
	to, ok := fromB64(first + rest)
	d.To = to
	return d, ok
}

// ListDeltas returns every static delta stored with a superblock, and the
// SHA-256 of each superblock file.
func (r *Repo) ListDeltas() (map[DeltaID]Checksum, error) {
	out := map[DeltaID]Checksum{}
	root := filepath.Join(r.path, "deltas")
	firsts, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list deltas: %w", err)
	}
	for _, f := range firsts {
		if !f.IsDir() || len(f.Name()) != 2 {
			continue
		}
		rests, err := os.ReadDir(filepath.Join(root, f.Name()))
		if err != nil {
			return nil, fmt.Errorf("list deltas: %w", err)
		}
		for _, e := range rests {
			id, ok := parseDeltaDir(f.Name(), e.Name())
			if !ok || !e.IsDir() {
				continue // staging directories and strays
			}
			b, err := readLimited(filepath.Join(r.path, filepath.FromSlash(id.SuperblockPath())), MaxMetadataSize)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list deltas: %s: %w", id.Name(), err)
			}
			out[id] = sha256.Sum256(b)
		}
	}
	return out, nil
}

// RemoveDelta deletes a delta's directory: the superblock first, so a
// crash part-way leaves a directory ListDeltas ignores.
func (r *Repo) RemoveDelta(d DeltaID) error {
	dir := filepath.Join(r.path, filepath.FromSlash(d.Dir()))
	if err := os.Remove(filepath.Join(dir, "superblock")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove delta %s: %w", d.Name(), err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove delta %s: %w", d.Name(), err)
	}
	return syncDir(filepath.Dir(dir))
}

// pruneDeltas removes the deltas that no client should take any more: those
// ending at a commit no ref points at (a superseded release) and those
// starting from a commit that is no longer stored (a pruned release).
func (r *Repo) pruneDeltas(refs map[string]Checksum) (map[DeltaID]Checksum, error) {
	deltas, err := r.ListDeltas()
	if err != nil {
		return nil, err
	}
	tips := map[Checksum]bool{}
	for _, c := range refs {
		tips[c] = true
	}
	for d := range deltas {
		if tips[d.To] && (d.From.IsZero() || r.HasObject(d.From, ObjCommit)) {
			continue
		}
		if err := r.RemoveDelta(d); err != nil {
			return nil, err
		}
		delete(deltas, d)
	}
	return deltas, nil
}

// deltasVariant is the a{sv} of delta name → <ay superblock SHA-256>.
func deltasVariant(ids []DeltaID, deltas map[DeltaID]Checksum) gvariant.Variant {
	entries := make([]gvariant.DictEntry, 0, len(ids))
	for _, d := range ids {
		sum := deltas[d]
		entries = append(entries, gvariant.DictEntry{Key: d.Name(), Value: gvariant.Variant{Type: "ay", Value: sum[:]}})
	}
	return gvariant.Variant{Type: "a{sv}", Value: entries}
}

func sortedDeltaIDs(deltas map[DeltaID]Checksum) []DeltaID {
	ids := make([]DeltaID, 0, len(deltas))
	for d := range deltas {
		ids = append(ids, d)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Name() < ids[j].Name() })
	return ids
}

// writeDeltaIndexes writes delta-indexes/ for every target of deltas and
// removes the indexes of other targets. Each file is written atomically.
func (r *Repo) writeDeltaIndexes(tmpDir string, deltas map[DeltaID]Checksum) error {
	byTo := map[Checksum][]DeltaID{}
	for _, d := range sortedDeltaIDs(deltas) {
		byTo[d.To] = append(byTo[d.To], d)
	}
	want := map[string]bool{}
	for to, ids := range byTo {
		rel := IndexPath(to)
		want[rel] = true
		b, err := MarshalMetadata(Metadata{{Key: SummaryStaticDeltas, Value: deltasVariant(ids, deltas)}})
		if err != nil {
			return fmt.Errorf("delta index: %w", err)
		}
		p := filepath.Join(r.path, filepath.FromSlash(rel))
		if old, err := os.ReadFile(p); err == nil && string(old) == string(b) {
			continue
		}
		if err := mkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("delta index: %w", err)
		}
		if err := writeFileAtomic(tmpDir, p, b, 0o644); err != nil {
			return fmt.Errorf("delta index: %w", err)
		}
	}
	root := filepath.Join(r.path, "delta-indexes")
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipDir
			}
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			return nil
		}
		rel, err := filepath.Rel(r.path, p)
		if err != nil {
			return err
		}
		if !want[filepath.ToSlash(rel)] {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delta index: %w", err)
	}
	return nil
}

// ParseDeltaIndex decodes a delta index (or the ostree.static-deltas value
// of a summary) into delta → superblock SHA-256.
func ParseDeltaIndex(md Metadata) (map[DeltaID]Checksum, error) {
	out := map[DeltaID]Checksum{}
	v, ok := md.Lookup(SummaryStaticDeltas)
	if !ok {
		return out, nil
	}
	entries, ok := v.Value.([]gvariant.DictEntry)
	if v.Type != "a{sv}" || !ok {
		return nil, fmt.Errorf("%w: %s has type %s, want a{sv}", ErrCorrupt, SummaryStaticDeltas, v.Type)
	}
	for _, e := range entries {
		name, _ := e.Key.(string)
		d, err := ParseDeltaName(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		sv, ok := e.Value.(gvariant.Variant)
		b, ok2 := sv.Value.([]byte)
		if !ok || !ok2 || sv.Type != "ay" {
			return nil, fmt.Errorf("%w: delta %s: digest is not ay", ErrCorrupt, name)
		}
		c, err := checksumFromBytes(b)
		if err != nil {
			return nil, fmt.Errorf("delta %s: %w", name, err)
		}
		out[d] = c
	}
	return out, nil
}

// XattrsGV is the a(ayay) value of xattrs (names NUL-terminated, sorted),
// as content headers and delta parts store them.
func XattrsGV(x []Xattr) []any {
	x = append([]Xattr(nil), x...)
	sortXattrs(x)
	return xattrsToGV(x)
}

// ParseXattrsGV is the inverse of XattrsGV; it refuses unsorted,
// duplicated or malformed names.
func ParseXattrsGV(v any) ([]Xattr, error) { return xattrsFromGV(v) }
