package ostree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
)

// SummaryRef is one ref listed in a summary.
type SummaryRef struct {
	Name       string
	CommitSize uint64 // upper bound the client accepts for the commit download
	Checksum   Checksum
	Metadata   Metadata
}

// Summary is the repository index clients read first.
type Summary struct {
	Refs     []SummaryRef // sorted by name: clients binary-search it
	Metadata Metadata
}

// Lookup finds a ref.
func (s *Summary) Lookup(ref string) (SummaryRef, bool) {
	i := sort.Search(len(s.Refs), func(i int) bool { return s.Refs[i].Name >= ref })
	if i < len(s.Refs) && s.Refs[i].Name == ref {
		return s.Refs[i], true
	}
	return SummaryRef{}, false
}

// Marshal encodes the summary. Note the commit size is little-endian (host
// order in libostree), unlike every other integer ostree stores.
func (s *Summary) Marshal() ([]byte, error) {
	refs := append([]SummaryRef(nil), s.Refs...)
	sort.Slice(refs, func(i, j int) bool { return refs[i].Name < refs[j].Name })
	arr := make([]any, len(refs))
	for i, r := range refs {
		md := r.Metadata
		if md == nil {
			md = Metadata{}
		}
		c := r.Checksum
		arr[i] = []any{r.Name, []any{r.CommitSize, c[:], []gvariant.DictEntry(md)}}
	}
	md := s.Metadata
	if md == nil {
		md = Metadata{}
	}
	return gvariant.Marshal(SummaryType, []any{arr, []gvariant.DictEntry(md)})
}

// ParseSummary decodes and validates a summary.
func ParseSummary(b []byte) (*Summary, error) {
	v, err := gvariant.Unmarshal(SummaryType, b)
	if err != nil {
		return nil, fmt.Errorf("%w: summary: %v", ErrCorrupt, err)
	}
	t := v.([]any)
	s := &Summary{Metadata: Metadata(t[1].([]gvariant.DictEntry))}
	for _, e := range t[0].([]any) {
		re := e.([]any)
		inner := re[1].([]any)
		c, err := checksumFromBytes(inner[1].([]byte))
		if err != nil {
			return nil, fmt.Errorf("summary ref: %w", err)
		}
		name := re[0].(string)
		if err := ValidateRef(name); err != nil {
			return nil, fmt.Errorf("summary: %w", err)
		}
		if n := len(s.Refs); n > 0 && s.Refs[n-1].Name >= name {
			return nil, fmt.Errorf("%w: summary refs not sorted at %q", ErrCorrupt, name)
		}
		s.Refs = append(s.Refs, SummaryRef{Name: name, CommitSize: inner[0].(uint64), Checksum: c, Metadata: Metadata(inner[2].([]gvariant.DictEntry))})
	}
	return s, nil
}

// Summary metadata keys (libostree ostree-repo-private.h).
const (
	summaryLastModified = "ostree.summary.last-modified"
	summaryMode         = "ostree.summary.mode"
	summaryTombstones   = "ostree.summary.tombstone-commits"
	commitTimestampKey  = "ostree.commit.timestamp"
	commitVersionKey    = "ostree.commit.version"
)

// BuildSummary lists every ref of the repository as libostree's
// `ostree summary -u` does, and every stored static delta (under
// ostree.static-deltas, with ostree.summary.indexed-deltas set) when there
// are any.
func (r *Repo) BuildSummary(now time.Time) (*Summary, error) {
	refs, err := r.ListRefs()
	if err != nil {
		return nil, err
	}
	deltas, err := r.ListDeltas()
	if err != nil {
		return nil, err
	}
	return r.buildSummary(now, refs, deltas)
}

func (r *Repo) buildSummary(now time.Time, refs map[string]Checksum, deltas map[DeltaID]Checksum) (*Summary, error) {
	s := &Summary{}
	for name, c := range refs {
		b, err := r.ReadMetadata(c, ObjCommit)
		if err != nil {
			return nil, fmt.Errorf("summary: ref %s: %w", name, err)
		}
		cm, err := ParseCommit(b)
		if err != nil {
			return nil, fmt.Errorf("summary: ref %s: %w", name, err)
		}
		md := Metadata{{Key: commitTimestampKey, Value: Uint64BEVar(cm.Timestamp)}}
		if v := cm.Version(); v != "" {
			md = append(md, gvariant.DictEntry{Key: commitVersionKey, Value: StringVar(v)})
		}
		s.Refs = append(s.Refs, SummaryRef{Name: name, CommitSize: uint64(len(b)), Checksum: c, Metadata: md})
	}
	sort.Slice(s.Refs, func(i, j int) bool { return s.Refs[i].Name < s.Refs[j].Name })
	s.Metadata = Metadata{
		{Key: summaryLastModified, Value: Uint64BEVar(uint64(now.Unix()))},
		{Key: summaryMode, Value: StringVar("archive-z2")},
		{Key: summaryTombstones, Value: gvariant.Variant{Type: "b", Value: false}},
	}
	if len(deltas) > 0 {
		s.Metadata = append(s.Metadata,
			gvariant.DictEntry{Key: SummaryStaticDeltas, Value: deltasVariant(sortedDeltaIDs(deltas), deltas)},
			gvariant.DictEntry{Key: summaryIndexedDeltas, Value: gvariant.Variant{Type: "b", Value: true}})
	}
	return s, nil
}

// summaryNext is where a summary swap is journaled: the new summary and
// its signatures are written there whole, and the directory's rename into
// this name is the commit point; finishSummary then moves the files into
// place, and Begin finishes a swap a crash cut short.
const summaryNext = "tmp/summary-next"

// WriteSummary regenerates the summary and publishes it with its
// signatures. sign gets the exact summary bytes and returns the a{sv} for
// summary.sig (nil sign or nil result means unsigned: summary.sig is
// removed). Both files are journaled first, so a crash between the two
// renames is finished by the next Begin instead of leaving a summary with
// the wrong signature.
//
// A client that fetches summary.sig just before the swap and summary just
// after still sees a mismatch and must retry, as with libostree. A
// summary.sig signing both the old and the new summary would close that
// window, but ostree 2022.7 judges a GPG summary.sig by its first
// signature, so no order serves both summaries
// (e2e TestStockPullRejectsSummarySigWithExtraSignature).
//
// Static deltas are listed too: first the deltas no client should take are
// removed (those ending at a commit no ref names any more, and those
// starting from a commit that is gone), then delta-indexes/ is rewritten
// for the rest, then the summary names them with their superblock digests.
func (t *Txn) WriteSummary(now time.Time, sign func(summary []byte) (Metadata, error)) error {
	refs, err := t.repo.ListRefs()
	if err != nil {
		return err
	}
	deltas, err := t.repo.pruneDeltas(refs)
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if err := t.repo.writeDeltaIndexes(t.stage, deltas); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	s, err := t.repo.buildSummary(now, refs, deltas)
	if err != nil {
		return err
	}
	b, err := s.Marshal()
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	files := map[string][]byte{"summary": b}
	if sign != nil {
		md, err := sign(b)
		if err != nil {
			return fmt.Errorf("sign summary: %w", err)
		}
		if md != nil {
			if files["summary.sig"], err = MarshalMetadata(md); err != nil {
				return fmt.Errorf("summary.sig: %w", err)
			}
		}
	}
	if _, ok := files["summary.sig"]; !ok {
		files["unsigned"] = nil
	}
	return t.swapSummary(files)
}

// swapSummary journals files (summary, and summary.sig or the "unsigned"
// marker) under tmp/summary-next and moves them into place.
func (t *Txn) swapSummary(files map[string][]byte) error {
	stage := filepath.Join(t.stage, "summary-next")
	if err := os.Mkdir(stage, 0o755); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	for name, data := range files {
		if err := writeFileAtomic("", filepath.Join(stage, name), data, 0o644); err != nil {
			return fmt.Errorf("summary: %w", err)
		}
	}
	next := filepath.Join(t.repo.path, summaryNext)
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if err := os.Rename(stage, next); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if err := syncDir(filepath.Dir(next)); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	return t.repo.finishSummary()
}

// finishSummary completes a journaled summary swap; each step is skipped
// when a previous, interrupted run already did it.
func (r *Repo) finishSummary() error {
	next := filepath.Join(r.path, summaryNext)
	if _, err := os.Stat(next); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	move := func(from, to string) (bool, error) {
		err := os.Rename(filepath.Join(next, from), filepath.Join(r.path, to))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("summary: %w", err)
		}
		return true, syncDir(r.path)
	}
	if _, err := os.Stat(filepath.Join(next, "unsigned")); err == nil {
		if err := os.Remove(filepath.Join(r.path, "summary.sig")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("summary: %w", err)
		}
	}
	if _, err := move("summary", "summary"); err != nil {
		return err
	}
	if _, err := move("summary.sig", "summary.sig"); err != nil {
		return err
	}
	return os.RemoveAll(next)
}

// ReadSummary reads the repository's summary file.
func (r *Repo) ReadSummary() (*Summary, []byte, error) {
	b, err := readLimited(filepath.Join(r.path, "summary"), MaxMetadataSize)
	if err != nil {
		return nil, nil, fmt.Errorf("read summary: %w", err)
	}
	s, err := ParseSummary(b)
	return s, b, err
}
