// Package tlogmon is the monitor of the public release transparency log
// (mxosctl log show and log verify): it reads a server's log at /log/ and
// its public repository at /repo/, both over plain HTTP GETs, and checks
// them against each other. Anyone can run it; it needs no token.
//
// Verify checks, in order:
//   - the checkpoint's signature by the log key the user gives (never one
//     the server offers);
//   - every entry: fetched, parsed, and the tree root recomputed from all
//     of them must equal the signed root;
//   - consistency with the checkpoint remembered from the last run: the
//     first remembered-size entries must hash to the remembered root, so
//     a rewritten history or a split view shows even without trusting the
//     server's tiles (same size with another root, or a smaller tree, are
//     refused too);
//   - re-derivation of each release and promotion from the repository:
//     the commit object exists, hashes to its name and carries the
//     entry's version;
//   - that every commit on a channel ref (refs/heads/REF of each channel
//     of the definitions given, and each ref in the summary) is in the log
//     for that channel and architecture, and each ancestor commit still
//     in the repository is in the log at all. A commit moved onto a
//     channel outside the log is reported here.
//
// Problems of the repository are collected in Report.Problems; a bad
// signature, a fork or an unreadable log are errors.
package tlogmon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/tlog"
)

// MaxAncestors bounds how far back the history of each ref is walked.
const MaxAncestors = 1000

// Options say what to monitor.
type Options struct {
	// Server is the mxos-server base URL; the log is at Server/log/ and
	// the repository at Server/repo/.
	Server string
	HTTP   *http.Client
	// Verifier is the log's public key; its name is the log's origin.
	Verifier note.Verifier
	// Channels maps refs to channels; without it only commits absent
	// from the log altogether are flagged.
	Channels *channel.Set
}

// Logged is an entry and its index.
type Logged struct {
	Index uint64
	Entry tlog.Entry
}

// Report is what Verify found.
type Report struct {
	Checkpoint tlog.Checkpoint
	Entries    []Logged
	// Problems are findings about the repository, in plain words.
	Problems []string
}

// Read fetches and checks the log: the signed checkpoint and all entries,
// whose recomputed root must be the signed one.
func Read(ctx context.Context, o Options) (tlog.Checkpoint, []Logged, error) {
	f, err := o.fetcher()
	if err != nil {
		return tlog.Checkpoint{}, nil, err
	}
	raw, err := f.ReadCheckpoint(ctx)
	if err != nil {
		return tlog.Checkpoint{}, nil, fmt.Errorf("reading the log's checkpoint: %w", err)
	}
	cp, err := tlog.OpenCheckpoint(raw, o.Verifier)
	if err != nil {
		return tlog.Checkpoint{}, nil, err
	}
	var entries []Logged
	var leaves [][]byte
	for b := uint64(0); b*256 < cp.Size; b++ {
		bundle, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, b, cp.Size)
		if err != nil {
			return cp, nil, fmt.Errorf("reading log entries: %w", err)
		}
		for _, raw := range bundle.Entries {
			i := uint64(len(leaves))
			if i >= cp.Size {
				break
			}
			leaves = append(leaves, tlog.LeafHash(raw))
			e, err := tlog.Parse(raw)
			if err != nil {
				return cp, nil, fmt.Errorf("log entry %d: %w", i, err)
			}
			entries = append(entries, Logged{Index: i, Entry: e})
		}
	}
	if uint64(len(leaves)) != cp.Size {
		return cp, nil, fmt.Errorf("%w: the checkpoint has %d entries, the log serves %d", tlog.ErrCheckpoint, cp.Size, len(leaves))
	}
	if root := rootOf(leaves); !bytes.Equal(root, cp.Root) {
		return cp, nil, fmt.Errorf("%w: the entries served do not hash to the signed root", tlog.ErrFork)
	}
	return cp, entries, nil
}

// Verify reads the log, checks it against remembered (the raw checkpoint
// of an earlier run, or nil) and against the repository.
func Verify(ctx context.Context, o Options, remembered []byte) (*Report, error) {
	cp, entries, err := Read(ctx, o)
	if err != nil {
		return nil, err
	}
	rep := &Report{Checkpoint: cp, Entries: entries}
	if remembered != nil {
		old, err := tlog.OpenCheckpoint(remembered, o.Verifier)
		if err != nil {
			return nil, fmt.Errorf("the remembered checkpoint: %w", err)
		}
		if err := consistent(old, cp, entries); err != nil {
			return nil, err
		}
	}
	if err := o.checkRepository(ctx, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// consistent checks that cp's tree extends old's, from the entries
// themselves.
func consistent(old, cp tlog.Checkpoint, entries []Logged) error {
	if cp.Size <= old.Size { // equal roots, or refused
		return evidence(tlog.CheckConsistency(old, cp, nil), old, cp)
	}
	leaves := make([][]byte, old.Size)
	for i := range leaves {
		b, _ := entries[i].Entry.Marshal() // Parse accepts canonical bytes only
		leaves[i] = tlog.LeafHash(b)
	}
	if old.Size > 0 && !bytes.Equal(rootOf(leaves), old.Root) {
		return evidence(fmt.Errorf("%w: the first %d entries of the log do not hash to the remembered root", tlog.ErrFork, old.Size), old, cp)
	}
	return nil
}

func evidence(err error, old, cp tlog.Checkpoint) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w\nremembered checkpoint:\n%s\ncheckpoint served now:\n%s", err, old.Raw, cp.Raw)
}

// checkRepository re-derives entries from the repository and looks for
// commits on channels that the log does not name.
func (o Options) checkRepository(ctx context.Context, rep *Report) error {
	type key struct{ channel, arch, commit string }
	onChannel := map[key]bool{}
	anywhere := map[string]bool{}
	for _, l := range rep.Entries {
		e := l.Entry
		if e.Kind != tlog.KindRelease && e.Kind != tlog.KindPromotion {
			continue
		}
		onChannel[key{e.Channel, e.Arch, e.Commit}] = true
		anywhere[e.Commit] = true
		c, err := o.commit(ctx, e.Commit)
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("entry %d (%s %s %s): %v", l.Index, e.Channel, e.Arch, e.Version, err))
			continue
		}
		if v := c.Version(); v != e.Version {
			rep.Problems = append(rep.Problems, fmt.Sprintf("entry %d names version %s, but commit %s is version %q", l.Index, e.Version, short(e.Commit), v))
		}
	}

	// Refs to check: the channels' refs, and every ref in the summary.
	type target struct{ channel, arch string }
	refs := map[string]*target{}
	if o.Channels != nil {
		for _, ch := range o.Channels.Channels() {
			for arch, ref := range ch.Refs {
				refs[ref] = &target{ch.Name, arch}
			}
		}
	}
	if b, err := o.get(ctx, "repo/summary"); err == nil {
		s, err := ostree.ParseSummary(b)
		if err != nil {
			return fmt.Errorf("the repository's summary: %w", err)
		}
		for _, r := range s.Refs {
			if _, ok := refs[r.Name]; !ok {
				refs[r.Name] = nil
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	names := make([]string, 0, len(refs))
	for r := range refs {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, ref := range names {
		t := refs[ref]
		b, err := o.get(ctx, "repo/refs/heads/"+ref)
		if errors.Is(err, os.ErrNotExist) {
			continue // a channel without releases for this arch yet
		} else if err != nil {
			return err
		}
		head := strings.TrimSpace(string(b))
		switch {
		case t != nil && !onChannel[key{t.channel, t.arch, head}]:
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s (channel %s, %s) is at commit %s, which the log does not list on that channel", ref, t.channel, t.arch, short(head)))
		case t == nil && !anywhere[head]:
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s is at commit %s, which is not in the log", ref, short(head)))
		}
		// Ancestors still in the repository must be in the log.
		c, err := o.commit(ctx, head)
		for n := 0; err == nil && n < MaxAncestors && c.Parent != (ostree.Checksum{}); n++ {
			parent := c.Parent.String()
			if c, err = o.commit(ctx, parent); err != nil {
				break // pruned or never uploaded: the walk ends
			}
			if !anywhere[parent] {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s has commit %s in its history, which is not in the log", ref, short(parent)))
			}
		}
	}
	return nil
}

// commit fetches a commit object and checks it hashes to its name.
func (o Options) commit(ctx context.Context, hexsum string) (*ostree.Commit, error) {
	sum, err := ostree.ParseChecksum(hexsum)
	if err != nil {
		return nil, err
	}
	b, err := o.get(ctx, "repo/objects/"+hexsum[:2]+"/"+hexsum[2:]+".commit")
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("commit %s is not in the repository", short(hexsum))
	} else if err != nil {
		return nil, err
	}
	if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum.String() {
		return nil, fmt.Errorf("commit %s: the repository serves bytes of another object", short(hexsum))
	}
	c, err := ostree.ParseCommit(b)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", short(hexsum), err)
	}
	return c, nil
}

func (o Options) base() (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(o.Server, "/") + "/")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server address %q is not an http(s) URL", o.Server)
	}
	return u, nil
}

func (o Options) fetcher() (*client.HTTPFetcher, error) {
	u, err := o.base()
	if err != nil {
		return nil, err
	}
	return client.NewHTTPFetcher(u.JoinPath("log/"), o.HTTP)
}

// get reads a file below the server's base URL; a 404 wraps
// os.ErrNotExist.
func (o Options) get(ctx context.Context, p string) ([]byte, error) {
	u, err := o.base()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.JoinPath(p).String(), nil)
	if err != nil {
		return nil, err
	}
	hc := o.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", p, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("/%s: %w", p, os.ErrNotExist)
	default:
		return nil, fmt.Errorf("reading /%s: %s", p, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// rootOf is the RFC 6962 root of leaf hashes.
func rootOf(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		return rfc6962.DefaultHasher.EmptyRoot()
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return rfc6962.DefaultHasher.HashChildren(rootOf(leaves[:k]), rootOf(leaves[k:]))
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
