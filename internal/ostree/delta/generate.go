package delta

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Bounds of generation (and of what the puller accepts, see apply.go).
const (
	// MaxPartPayload bounds the object bytes one part carries; a part is
	// closed before an object would take it past this.
	MaxPartPayload = 16 << 20
	// MaxInlineObject: larger content objects are fallbacks (fetched
	// loose), so no part ever holds more than MaxPartPayload +
	// MaxInlineObject of object bytes.
	MaxInlineObject = 8 << 20
	// DefaultTimeout bounds the generation of one release's deltas.
	DefaultTimeout = 10 * time.Minute
	// DefaultSources is how many previous releases of a ref get a delta
	// to the new one when the channel does not say (static_deltas).
	DefaultSources = 2
)

// xzConfig is the encoder every part uses: xz container, CRC64, a
// dictionary of at most 8 MiB (ostree's clients decode with a 100 MiB
// memory limit), and no larger than the payload: a decoder allocates and
// clears the dictionary the stream declares, which for the usual small
// update part cost more CPU than decoding it.
func xzConfig(payload int) xz.WriterConfig {
	dict := min(max(payload, minDict), maxDict)
	return xz.WriterConfig{DictCap: dict, CheckSum: xz.CRC64}
}

// Dictionary bounds of xzConfig.
const (
	minDict = 64 << 10
	maxDict = 8 << 20
)

// Generate writes the static delta id into repo: from id.From (zero:
// from scratch) to id.To, both complete in repo. An existing delta with
// the same name is replaced. The delta is written in repo/tmp and moved
// into deltas/ whole; it becomes visible to clients when the summary lists
// it (ostree.Txn.WriteSummary). The caller holds the write lock.
//
// Parts are deterministic (the same pair gives the same part bytes), so
// their immutable caching by name stays correct when a delta is
// regenerated; only the superblock (timestamp, signatures) changes.
func Generate(ctx context.Context, repo *ostree.Repo, id ostree.DeltaID, now time.Time) error {
	if err := generate(ctx, repo, id, now); err != nil {
		return fmt.Errorf("static delta %s: %w", id.Name(), err)
	}
	return nil
}

func generate(ctx context.Context, repo *ostree.Repo, id ostree.DeltaID, now time.Time) error {
	commit, err := repo.ReadMetadata(id.To, ostree.ObjCommit)
	if err != nil {
		return err
	}
	if err := repo.CheckComplete(id.To); err != nil {
		return err
	}
	objs, err := repo.Reachable(id.To)
	if err != nil {
		return err
	}
	skip := map[ostree.ObjectRef]bool{}
	var oldFiles map[string]ostree.Checksum // path → object in From
	var oldByName map[string][]ostree.Checksum
	newPaths := map[ostree.Checksum]string{}
	if !id.From.IsZero() {
		if oldFiles, err = filePaths(repo, id.From); err != nil {
			return err
		}
		nf, err := filePaths(repo, id.To)
		if err != nil {
			return err
		}
		for p, c := range nf {
			if q, ok := newPaths[c]; !ok || p < q {
				newPaths[c] = p
			}
		}
		oldByName = byBaseName(oldFiles)
		if err := repo.CheckComplete(id.From); err != nil {
			return fmt.Errorf("from: %w", err)
		}
		old, err := repo.Reachable(id.From)
		if err != nil {
			return err
		}
		for _, o := range old {
			skip[o] = true
		}
	}
	md, err := repo.ReadCommitMeta(id.To)
	if err != nil {
		return err
	}

	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	stage := filepath.Join(repo.Path(), "tmp", "delta-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(stage, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(stage)

	sb := &Superblock{Timestamp: uint64(now.Unix()), From: id.From, To: id.To, Commit: commit}
	if md != nil {
		sb.Metadata = ostree.Metadata{{Key: endiannessKey, Value: gvariant.Variant{Type: "y", Value: uint8('l')}},
			{Key: id.CommitMetaKey(), Value: varMeta(md)}}
	}
	pb := newPartBuilder()
	flush := func() error {
		if len(pb.objects) == 0 {
			return nil
		}
		h, err := pb.finish(ctx, filepath.Join(stage, fmt.Sprint(len(sb.Parts))))
		if err != nil {
			return err
		}
		sb.Parts = append(sb.Parts, h)
		pb = newPartBuilder()
		return nil
	}
	for _, o := range objs {
		if skip[o] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if o.Type.IsMetadata() {
			b, err := repo.ReadMetadata(o.Checksum, o.Type)
			if err != nil {
				return err
			}
			if len(pb.data)+len(b) > MaxPartPayload {
				if err := flush(); err != nil {
					return err
				}
			}
			pb.addMetadata(o, b)
			continue
		}
		if olds := diffSources(repo, oldFiles, oldByName, newPaths[o.Checksum], o.Checksum); len(olds) > 0 {
			done, err := tryDiff(repo, &pb, o, olds, flush)
			if err != nil {
				return err
			}
			if done {
				continue
			}
		}
		cr, err := repo.OpenContent(o.Checksum)
		if err != nil {
			return err
		}
		h := cr.Header
		if h.Size > MaxInlineObject {
			cr.Close()
			fi, err := os.Stat(repo.ObjectFile(o.Checksum, o.Type))
			if err != nil {
				return err
			}
			sb.Fallbacks = append(sb.Fallbacks, Fallback{Object: Object{o.Type, o.Checksum}, Size: uint64(fi.Size()), USize: h.Size})
			continue
		}
		size := int(h.Size)
		if h.IsSymlink() {
			size = len(h.SymlinkTarget)
		}
		if len(pb.data)+size > MaxPartPayload {
			if err := flush(); err != nil {
				cr.Close()
				return err
			}
		}
		err = pb.addContent(o, h, cr)
		cr.Close()
		if err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	b, err := sb.Marshal()
	if err != nil {
		return err
	}
	if err := storage.WriteFile(filepath.Join(stage, "superblock"), b, 0o644, storage.TempDir(stage)); err != nil {
		return err
	}
	if err := storage.SyncDir(stage); err != nil {
		return err
	}
	final := filepath.Join(repo.Path(), filepath.FromSlash(id.Dir()))
	if err := storage.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(final); err == nil {
		if err := repo.RemoveDelta(id); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(stage, final); err != nil {
		return err
	}
	return storage.SyncDir(filepath.Dir(final))
}

// tryDiff adds regular file o as a diff over the one of the client's
// files olds that leaves the fewest new bytes, when o is small enough to
// be inline and enough of it is found in that file.
func tryDiff(repo *ostree.Repo, pb **partBuilder, o ostree.ObjectRef, olds []ostree.Checksum, flush func() error) (bool, error) {
	h, data, err := readContent(repo, o.Checksum)
	if err != nil || data == nil {
		return false, err
	}
	var best []segment
	var bestOld ostree.Checksum
	bestLit := 0
	for _, old := range olds {
		_, od, err := readContent(repo, old)
		if err != nil {
			return false, err
		}
		if od == nil {
			continue
		}
		segs := diff(od, data)
		if segs == nil {
			continue
		}
		lit := 0
		for _, s := range segs {
			if !s.Copy {
				lit += s.N
			}
		}
		if best == nil || lit < bestLit {
			best, bestOld, bestLit = segs, old, lit
		}
	}
	if best == nil {
		return false, nil
	}
	if len((*pb).data)+bestLit+32 > MaxPartPayload {
		if err := flush(); err != nil { // replaces *pb
			return false, err
		}
	}
	(*pb).addDiff(o, h, bestOld, data, best)
	return true, nil
}

// partBuilder collects one part's objects.
type partBuilder struct {
	p       Payload
	data    []byte
	ops     []byte
	objects []Object
	usize   uint64
	modes   map[Mode]int
	xattrs  map[string]int
}

func newPartBuilder() *partBuilder {
	return &partBuilder{modes: map[Mode]int{}, xattrs: map[string]int{}}
}

func (pb *partBuilder) addMetadata(o ostree.ObjectRef, b []byte) {
	pb.ops = append(pb.ops, OpSpliceClose)
	pb.ops = appendVarint(pb.ops, uint64(len(b)))
	pb.ops = appendVarint(pb.ops, uint64(len(pb.data)))
	pb.data = append(pb.data, b...)
	pb.objects = append(pb.objects, Object{o.Type, o.Checksum})
	pb.usize += uint64(len(b))
}

func (pb *partBuilder) addContent(o ostree.ObjectRef, h *ostree.FileHeader, content io.Reader) error {
	mi, xi := pb.index(h)
	off := len(pb.data)
	if h.IsSymlink() {
		pb.data = append(pb.data, h.SymlinkTarget...)
	} else {
		var buf bytes.Buffer
		buf.Grow(int(h.Size))
		if _, err := io.Copy(&buf, content); err != nil {
			return err
		}
		pb.data = append(pb.data, buf.Bytes()...)
	}
	n := len(pb.data) - off
	pb.ops = append(pb.ops, OpSpliceClose)
	pb.ops = appendVarint(pb.ops, uint64(mi))
	pb.ops = appendVarint(pb.ops, uint64(xi))
	pb.ops = appendVarint(pb.ops, uint64(n))
	pb.ops = appendVarint(pb.ops, uint64(off))
	pb.objects = append(pb.objects, Object{o.Type, o.Checksum})
	pb.usize += uint64(n)
	return nil
}

// finish writes the part file (compression byte, xz stream of the
// payload) durably to path and returns its header.
func (pb *partBuilder) finish(ctx context.Context, path string) (PartHeader, error) {
	pb.p.Data, pb.p.Ops = pb.data, pb.ops
	raw, err := pb.p.Marshal()
	if err != nil {
		return PartHeader{}, err
	}
	z, err := compressXZ(ctx, raw)
	if err != nil {
		return PartHeader{}, err
	}
	b := append([]byte{CompXZ}, z...)
	if err := storage.WriteFile(path, b, 0o644, storage.TempDir(filepath.Dir(path))); err != nil {
		return PartHeader{}, err
	}
	return PartHeader{Checksum: sha256.Sum256(b), Size: uint64(len(b)), USize: pb.usize, Objects: pb.objects}, nil
}
