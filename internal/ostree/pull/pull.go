// Package pull is the device side of the OSTree HTTP pull protocol in pure Go:
// it brings one signed commit and everything its tree reaches from a
// release server (or any archive repository served over HTTP) into a local
// archive repository, and moves a local ref to it.
//
// The trust chain runs from pinned keys outward, and nothing is stored
// before the link that vouches for it has been checked. Two key sets, each
// for its own role (Options.SummaryKeys and Options.CommitKeys): the
// server's online key signs the summary, which says only where a commit is
// and how large; the release keys sign commits, and only a release
// signature makes a commit acceptable (a commit signed by the online key
// alone is refused, however the summary is signed).
//
//  1. summary.sig must verify against the exact summary bytes with the
//     summary keys (sign.VerifyAll); the summary then names the commit of
//     the ref and bounds the commit's size.
//  2. The commit must hash to the name the summary gave, and its detached
//     metadata (.commitmeta) must carry valid signatures of the commit bytes
//     by the commit keys. The commit must be bound to the ref pulled
//     (ostree.ref-binding, so a commit of another channel or architecture
//     cannot be served in its place) and newer than the booted one.
//  3. Every dirtree and dirmeta must hash to the name its parent gave and
//     parse (ostree.ParseDirTree refuses "..", "/" and duplicate names);
//     every content object is decompressed and checked against its name by
//     ostree.Txn.WriteFilez before it is staged.
//
// A static delta the signed summary lists for the commit is tried first
// (delta.go): its parts are bounded and checked like objects, every object
// it makes must hash to its name, and whatever it did not bring (or all
// of it, when it is missing or bad) is then fetched as loose objects.
//
// Objects the destination already has are not fetched (they are found by
// listing its object directories once, not by a stat per object), so a
// pull interrupted after some objects were committed resumes where it
// stopped, and an update fetches only what changed. Parallel workers fetch
// directories before file contents, so the whole tree is known early.
// The local ref is moved last, after ostree checks the commit is complete,
// so a failed pull leaves the refs as they were.
//
// # Mirrors, time limits and caps
//
// A mirror is untrusted: it may be down, slow, silent, stale or hostile.
// Any failure of a mirror moves the pull to the next one before it gives
// up, and the error then names every mirror's failure:
//
//   - Choosing the commit: mirrors are asked in the configured order for
//     their view of the ref (signed summary, then the commit and its
//     signatures, then the policy checks). A mirror whose view fails any
//     step is skipped: no response, a bad or missing signature, a ref it
//     does not list, a corrupt commit object, and a stale view. Stale
//     means the mirror's validly signed summary names another commit than
//     Options.ExpectCommit (the one the server offered and the signed
//     channel metadata lists), or a commit that is not newer than the
//     booted one: a mirror that has not synced yet, or one that replays
//     an old but unexpired summary. With Options.ByChecksum the expected
//     commit is fetched by its checksum instead, whatever the summary
//     names, like any object (see below), and must pass the same checks.
//     The first mirror with a usable view
//     is used, and is then asked first for every object.
//   - Objects: each object is tried on every mirror in turn (starting
//     with the one that answered last) until one serves it intact; a
//     commit, dirtree or dirmeta that does not hash to its name and a
//     content object that fails its check count as that mirror's failure.
//
// Every request (summary, summary.sig, .commitmeta, every object) has the
// same three time limits (package httplimit): the response headers must
// arrive within Puller.HeaderTimeout (30 s); the body must then keep at
// least Puller.MinBytesPerSecond (1 KiB/s) over every Puller.Grace (30 s)
// window; and the whole request must end within Puller.Timeout (10 min).
// The first two catch a silent or trickling mirror quickly; the third is
// a last resort.
//
// Every body is capped, sized to what the file can be, and read into a
// buffer that never grows past its cap (httplimit.ReadAll), so an endless
// or oversized body costs at most about its cap and fails with
// ostree.ErrTooLarge: summary MaxSummarySize (10 MiB, a summary of ten
// thousand refs is about 1 MiB), summary.sig and .commitmeta
// MaxSignatureSize (64 KiB, room for dozens of signatures), a commit the
// size the signed summary gives for it (MaxCommitSize, 16 MiB, when the
// summary gives none), a dirtree MaxDirTreeSize (8 MiB, about 100,000
// entries in one directory; libostree warns above 7 MiB), a dirmeta
// MaxDirMetaSize (256 KiB; Linux caps the extended attributes of one
// file at 64 KiB), a content object Puller.MaxObjectSize (streamed to
// disk, never held in memory). A metadata object of more than 1 MiB, or
// of unannounced size, is read only two at a time (the HTTP client ends a
// body at its Content-Length, so an announced size bounds it), so the
// buffers of a pull stay under about 40 MB, and those of the summary and
// its signatures under 30 MB, whatever the mirrors send.
//
// Escaping symlinks are this package's concern only as stored data; they are
// refused when a tree is checked out (ostree.Repo.Checkout).
package pull

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxos-linux/mxos-update/internal/commitsig"
	"github.com/mxos-linux/mxos-update/internal/httplimit"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// Errors callers decide on; returned errors wrap them with detail.
var (
	// ErrUnsigned: the summary or the commit carries no signature of a
	// trusted engine (summary.sig or .commitmeta absent or empty).
	ErrUnsigned = errors.New("not signed")
	// ErrBadSignature: signatures are present but none verifies with the
	// pinned keys. Errors wrapping it also wrap sign.ErrBadSignature when
	// the sign package reported that.
	ErrBadSignature = errors.New("signature verification failed")
	// ErrNoRef: the signed summary does not list the ref.
	ErrNoRef = errors.New("ref not in summary")
	// ErrRefBinding: the commit is not bound to the ref it was served as.
	ErrRefBinding = errors.New("commit not bound to ref")
	// ErrOlder: the commit is not newer than the booted one (rollback).
	ErrOlder = errors.New("commit is not newer than the booted one")
	// ErrUnexpectedCommit: the summary names another commit than
	// Options.ExpectCommit.
	ErrUnexpectedCommit = errors.New("unexpected commit")
	// ErrTimeout: a request did not complete within Puller.Timeout.
	ErrTimeout = errors.New("request timed out")
	// ErrTooSlow: a response body arrived slower than
	// Puller.MinBytesPerSecond.
	ErrTooSlow = httplimit.ErrTooSlow
	// ErrNoHeaders: a mirror sent no response headers within
	// Puller.HeaderTimeout.
	ErrNoHeaders = httplimit.ErrNoHeaders
	// ErrHTTP: the server answered with an unexpected status.
	ErrHTTP = errors.New("unexpected HTTP status")
)

// Defaults applied to zero fields of Puller.
const (
	DefaultParallel          = 8
	DefaultMaxObjectSize     = 4 << 30
	DefaultTimeout           = 10 * time.Minute
	DefaultHeaderTimeout     = httplimit.DefaultHeaderTimeout
	DefaultMinBytesPerSecond = httplimit.DefaultMinBytesPerSecond
	DefaultGrace             = httplimit.DefaultGrace
)

// Caps on what one response may hold (see the package documentation).
const (
	// smallRead: a metadata object announced at most this large is read
	// at once; larger or unannounced ones maxBigReads at a time.
	smallRead   = 1 << 20
	maxBigReads = 2

	MaxSummarySize = 10 << 20
	// The per-object caps live in ostree, where every writer also keeps to
	// them (ostree.DeviceLimit).
	MaxSignatureSize = ostree.MaxSignatureSize // summary.sig and .commitmeta
	MaxCommitSize    = ostree.MaxCommitSize    // or the size the signed summary gives, if smaller
	MaxDirTreeSize   = ostree.MaxDirTreeSize
	MaxDirMetaSize   = ostree.MaxDirMetaSize
)

// Puller fetches commits from a set of mirrors. The zero value of every
// field but URLs and Verifiers has a usable default. A Puller may be used
// for several pulls, also concurrently.
type Puller struct {
	// URLs are the mirrors' repository base URLs (ending in /repo), tried
	// in order; a mirror that fails an object is left for the next one.
	URLs []string
	// HTTP is the client; a client with a pooled transport when nil. Its
	// own Timeout, if any, applies on top of Timeout below.
	HTTP *http.Client
	// Verifiers are the keys of a repository that one key set signs
	// entirely (summary and commits, as a local `mxosctl publish` does):
	// they stand in for Options.SummaryKeys and Options.CommitKeys when
	// those are nil. The device agent sets both Options fields instead.
	Verifiers []sign.Verifier
	// Parallel bounds concurrent requests (DefaultParallel when <= 0).
	Parallel int
	// MaxObjectSize bounds one compressed content object
	// (DefaultMaxObjectSize when <= 0).
	MaxObjectSize int64
	// Timeout bounds each request, body included (DefaultTimeout when <= 0).
	Timeout time.Duration
	// HeaderTimeout bounds the wait for each response's headers
	// (DefaultHeaderTimeout when <= 0); a mirror that does not answer in
	// time is left for the next one.
	HeaderTimeout time.Duration
	// MinBytesPerSecond aborts a body that delivers less than this over
	// any Grace-long window (DefaultMinBytesPerSecond when 0; negative
	// disables the floor).
	MinBytesPerSecond int64
	// Grace is the window over which throughput is measured
	// (DefaultGrace when <= 0).
	Grace time.Duration
	// Progress, when set, is called from any goroutine with the number of
	// objects fetched so far and the number known to be needed.
	Progress func(done, total int)
	// NoDeltas turns static deltas off: only loose objects are pulled.
	NoDeltas bool
	// OnDelta, when set, hears which static delta a pull used and, when
	// it was dropped for loose objects, why (err wraps the package delta
	// and ostree errors).
	OnDelta func(id ostree.DeltaID, err error)
}

// Options tunes one pull.
type Options struct {
	// MinTimestamp is the booted commit's timestamp: a commit with an older
	// timestamp is refused, and so is one with an equal timestamp unless it
	// is Current.
	MinTimestamp uint64
	// Current is the booted commit, if known (see MinTimestamp).
	Current ostree.Checksum
	// ExpectCommit, when not empty, is the 64-hex commit the summary must
	// name for the ref (but see ByChecksum).
	ExpectCommit string
	// ByChecksum lets a pull take ExpectCommit by its checksum when a
	// mirror's signed summary names another commit for the ref: a release
	// the ref has moved past, such as a rollout barrier a device must
	// install before the head. Set it only when ExpectCommit comes from
	// release-signed metadata (the device's signed channel targets). The
	// commit is then checked exactly as a head would be (release
	// signatures, ref binding, newer than the booted one, every object);
	// its size is bounded by MaxCommitSize, since the summary gives none.
	ByChecksum bool
	// SummaryKeys verify summary.sig: the server's online keys (on a
	// device, those its trusted TUF root names). Puller.Verifiers when nil.
	SummaryKeys []sign.Verifier
	// CommitKeys verify the commit's signatures: the release keys, the
	// only ones that make a commit acceptable. Puller.Verifiers when nil.
	CommitKeys []sign.Verifier
}

// keys returns the summary and commit key sets of a pull.
func (p *Puller) keys(opts Options) (summary, commit []sign.Verifier) {
	summary, commit = opts.SummaryKeys, opts.CommitKeys
	if summary == nil {
		summary = p.Verifiers
	}
	if commit == nil {
		commit = p.Verifiers
	}
	return summary, commit
}

// Pull fetches the commit ref names on the mirrors into dst, verifying it
// as the package documentation describes, and points dst's ref at it. On
// error the ref is unchanged; objects already verified may have been stored
// so that the next pull resumes.
func (p *Puller) Pull(ctx context.Context, dst *ostree.Repo, ref string, opts Options) (ostree.Checksum, error) {
	var zero ostree.Checksum
	if err := ostree.ValidateRef(ref); err != nil {
		return zero, fmt.Errorf("pull %s: %w", ref, err)
	}
	if len(p.URLs) == 0 {
		return zero, fmt.Errorf("pull %s: no mirror URLs configured", ref)
	}
	sumKeys, commitKeys := p.keys(opts)
	if len(sumKeys) == 0 {
		return zero, fmt.Errorf("pull %s: summary keys: %w", ref, sign.ErrNoKeys)
	}
	if len(commitKeys) == 0 {
		return zero, fmt.Errorf("pull %s: commit keys: %w", ref, sign.ErrNoKeys)
	}
	var expect ostree.Checksum
	if opts.ExpectCommit != "" {
		c, err := ostree.ParseChecksum(opts.ExpectCommit)
		if err != nil {
			return zero, fmt.Errorf("pull %s: expected commit: %w", ref, err)
		}
		expect = c
	}
	s := p.newSession()
	defer s.close()
	s.sumKeys, s.commitKeys = sumKeys, commitKeys

	v, err := s.choose(ctx, dst, ref, opts, expect)
	if err != nil {
		return zero, fmt.Errorf("pull %s: %w", ref, err)
	}
	c, commit := v.sref.Checksum, v.commit

	txn, err := dst.Begin()
	if err != nil {
		return zero, fmt.Errorf("pull %s: %w", ref, err)
	}
	defer txn.Close()
	complete := dst.HasObject(c, ostree.ObjCommit) && dst.CheckComplete(c) == nil
	if !complete && !p.NoDeltas {
		if id, want, ok := chooseDelta(dst, ref, v.sum, c, opts); ok {
			derr := s.applyDelta(ctx, txn, id, want, v.raw)
			// The delta's objects, each verified, go into objects/ so
			// that the walk below finds them; no ref names them yet.
			if err := txn.Commit(); err != nil {
				return zero, fmt.Errorf("pull %s: %w", ref, err)
			}
			if p.OnDelta != nil {
				p.OnDelta(id, derr)
			}
		}
	}
	if !complete {
		werr := s.walk(ctx, txn, commit.RootTree, commit.RootMeta)
		if werr == nil {
			if _, err := txn.WriteMetadata(ostree.ObjCommit, v.raw, c); err != nil {
				werr = fmt.Errorf("storing commit: %w", err)
			}
		}
		// Keep whatever was verified, even after a failure, so that the
		// next pull resumes; no ref names it until it is complete.
		if err := txn.Commit(); err != nil {
			werr = errors.Join(werr, err)
		}
		if werr != nil {
			return zero, fmt.Errorf("pull %s: commit %s: %w", ref, c, werr)
		}
	}
	if v.fetchedMeta {
		if err := txn.WriteCommitMeta(c, v.md); err != nil {
			return zero, fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	if err := txn.SetRef(ref, c); err != nil {
		return zero, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := txn.Close(); err != nil {
		return zero, fmt.Errorf("pull %s: %w", ref, err)
	}
	return c, nil
}

// checkPolicy applies the checks on a verified commit: ref binding and
// rollback protection.
func checkPolicy(ref string, c ostree.Checksum, commit *ostree.Commit, opts Options) error {
	bound := false
	for _, b := range commit.RefBindings() {
		if b == ref {
			bound = true
		}
	}
	if !bound {
		return fmt.Errorf("%w: commit is bound to %v, not %s", ErrRefBinding, commit.RefBindings(), ref)
	}
	if commit.Timestamp < opts.MinTimestamp || (commit.Timestamp == opts.MinTimestamp && c != opts.Current) {
		return fmt.Errorf("%w: commit timestamp %s, booted %s", ErrOlder,
			commit.Time().UTC().Format(time.RFC3339), time.Unix(int64(opts.MinTimestamp), 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// verifyErr classifies a sign.VerifyAll failure.
func verifyErr(what string, err error) error {
	if errors.Is(err, sign.ErrNoSignatures) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnsigned, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrBadSignature, err)
}

// session is the state of one Pull.
type session struct {
	p             *Puller
	client        *http.Client
	sem           chan struct{}
	maxObj        int64
	timeout       time.Duration
	headerTimeout time.Duration
	watch         *httplimit.Watcher
	big           chan struct{} // bounds the large metadata reads in flight
	prefer        atomic.Int64  // index of the mirror that last answered
	mu            sync.Mutex
	seen          map[ostree.ObjectRef]bool
	trees         map[ostree.Checksum]bool
	done          int
	total         int
	progress      func(done, total int)
	// local holds the objects dst had when the walk started.
	local map[ostree.ObjectRef]bool

	// sumKeys verify summary.sig, commitKeys the commit (Options).
	sumKeys, commitKeys []sign.Verifier
}

func (p *Puller) newSession() *session {
	s := &session{p: p, client: p.HTTP, maxObj: p.MaxObjectSize, timeout: p.Timeout, headerTimeout: p.HeaderTimeout,
		watch: httplimit.NewWatcher(p.MinBytesPerSecond, p.Grace),
		seen:  map[ostree.ObjectRef]bool{}, trees: map[ostree.Checksum]bool{}, progress: p.Progress}
	n := p.Parallel
	if n <= 0 {
		n = DefaultParallel
	}
	s.sem = make(chan struct{}, n)
	s.big = make(chan struct{}, maxBigReads)
	if s.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = n
		s.client = &http.Client{Transport: tr}
	}
	if s.maxObj <= 0 {
		s.maxObj = DefaultMaxObjectSize
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.headerTimeout <= 0 {
		s.headerTimeout = DefaultHeaderTimeout
	}
	return s
}

// close stops the session's throughput watcher.
func (s *session) close() { s.watch.Close() }

// view is one mirror's verified answer for the ref: the summary's entry,
// the commit and its signatures.
type view struct {
	sref        ostree.SummaryRef
	raw         []byte
	commit      *ostree.Commit
	md          ostree.Metadata
	fetchedMeta bool // md came from a mirror, not from dst
	sum         *ostree.Summary
}

// choose asks the mirrors in order for their view of ref and returns the
// first that passes every check (see the package documentation); the
// mirror it came from is asked first for the objects. The error wraps
// every mirror's failure.
func (s *session) choose(ctx context.Context, dst *ostree.Repo, ref string, opts Options, expect ostree.Checksum) (*view, error) {
	var errs []error
	// A commit that failed on every mirror is not fetched again for the
	// next mirror's summary.
	failed := map[ostree.Checksum]error{}
	for k, base := range s.p.URLs {
		v, err := s.viewFrom(ctx, dst, ref, opts, expect, k, failed)
		if err == nil {
			return v, nil
		}
		errs = append(errs, fmt.Errorf("mirror %s: %w", base, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (s *session) viewFrom(ctx context.Context, dst *ostree.Repo, ref string, opts Options, expect ostree.Checksum, k int, failed map[ostree.Checksum]error) (*view, error) {
	sum, err := s.summaryFrom(ctx, s.p.URLs[k])
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	sref, ok := sum.Lookup(ref)
	if !ok {
		return nil, ErrNoRef
	}
	c := sref.Checksum
	if !expect.IsZero() && c != expect {
		if !opts.ByChecksum {
			return nil, fmt.Errorf("%w (stale mirror?): summary names %s, expected %s", ErrUnexpectedCommit, c, expect)
		}
		// A release behind the head (or ahead of a stale mirror): asked
		// for by its checksum, on this mirror first and then the others.
		sref = ostree.SummaryRef{Name: ref, Checksum: expect}
		c = expect
	}
	if err, ok := failed[c]; ok {
		return nil, err
	}
	s.prefer.Store(int64(k))
	v := &view{sref: sref, sum: sum}
	v.raw, v.commit, v.md, v.fetchedMeta, err = s.commit(ctx, dst, ref, sref)
	if err == nil {
		err = checkPolicy(ref, c, v.commit, opts)
	}
	if err != nil {
		err = fmt.Errorf("commit %s: %w", c, err)
		failed[c] = err
		return nil, err
	}
	return v, nil
}

func (s *session) summaryFrom(ctx context.Context, base string) (*ostree.Summary, error) {
	sigBytes, err := s.getBytes(ctx, base, "summary.sig", MaxSignatureSize)
	if errors.Is(err, ostree.ErrNotFound) {
		return nil, fmt.Errorf("%w: no summary.sig: %w", ErrUnsigned, err)
	}
	if err != nil {
		return nil, err
	}
	sumBytes, err := s.getBytes(ctx, base, "summary", MaxSummarySize)
	if err != nil {
		return nil, err
	}
	md, err := ostree.ParseMetadata(sigBytes)
	if err != nil {
		return nil, fmt.Errorf("summary.sig: %w: %w", ErrBadSignature, err)
	}
	if err := sign.VerifyAll(s.sumKeys, sumBytes, commitsig.SignatureMap(md)); err != nil {
		return nil, verifyErr("summary", err)
	}
	sum, err := ostree.ParseSummary(sumBytes)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	return sum, nil
}

// commit obtains the commit object and its detached metadata, from dst
// when it has them and they verify, from the mirrors otherwise (a mirror
// serving a corrupt commit or bad signatures is left for the next), and
// checks the signatures. fetchedMeta reports whether md came from a
// mirror.
func (s *session) commit(ctx context.Context, dst *ostree.Repo, ref string, sref ostree.SummaryRef) (raw []byte, commit *ostree.Commit, md ostree.Metadata, fetchedMeta bool, err error) {
	c := sref.Checksum
	limit := int64(MaxCommitSize)
	if sref.CommitSize > 0 && sref.CommitSize < uint64(limit) {
		limit = int64(sref.CommitSize)
	}
	if dst.HasObject(c, ostree.ObjCommit) {
		if b, rerr := dst.ReadMetadata(c, ostree.ObjCommit); rerr == nil {
			raw = b
		}
	}
	if raw == nil {
		if raw, err = s.getObject(ctx, c, ostree.ObjCommit, limit); err != nil {
			return nil, nil, nil, false, err
		}
	}
	commit, err = ostree.ParseCommit(raw)
	if err != nil {
		return nil, nil, nil, false, err
	}
	verify := commitsig.Verifier(s.commitKeys)
	if local, lerr := dst.ReadCommitMeta(c); lerr == nil && local != nil && verify(c, raw, local) == nil {
		return raw, commit, local, false, nil
	}
	err = s.each(ctx, ostree.ObjectPath(c, ostree.ObjCommitMeta), MaxSignatureSize, func(r io.Reader, size int64) error {
		mb, err := readAll(r, MaxSignatureSize, size)
		if err != nil {
			return err
		}
		m, err := ostree.ParseMetadata(mb)
		if err != nil {
			return fmt.Errorf("commitmeta: %w: %w", ErrBadSignature, err)
		}
		if err := verify(c, raw, m); err != nil {
			return verifyErr("commit", err)
		}
		md = m
		return nil
	})
	if errors.Is(err, ostree.ErrNotFound) {
		return nil, nil, nil, false, fmt.Errorf("%w: no detached metadata: %w", ErrUnsigned, err)
	}
	if err != nil {
		return nil, nil, nil, false, err
	}
	return raw, commit, md, true, nil
}

// walk stores every object the tree reaches that dst lacks. Metadata the
// destination has is read (and hash-checked) locally so that the children
// of a partially pulled tree are still visited.
//
// A fixed pool of Parallel workers takes jobs from one queue, dirtrees and
// dirmeta before content: the walk then discovers the whole tree early and
// keeps every connection busy with content until the end, instead of
// letting thousands of queued content fetches delay the directories that
// name the rest of the work.
func (s *session) walk(ctx context.Context, txn *ostree.Txn, tree, meta ostree.Checksum) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if local, err := listObjects(txn.Repo()); err == nil {
		s.local = local
	}
	q := newJobQueue()
	q.push(job{kind: jobTree, c: tree, meta: meta})
	var wg sync.WaitGroup
	for range cap(s.sem) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, ok := q.next()
				if !ok {
					return
				}
				if err := s.runJob(ctx, txn, q, j); err != nil {
					q.fail(err)
					cancel(err)
				}
				q.done()
			}
		}()
	}
	wg.Wait()
	return q.err
}

// jobKind says what a job fetches.
type jobKind uint8

const (
	jobTree jobKind = iota // a dirtree and, first, its dirmeta
	jobMeta                // a dirmeta
	jobFile                // a content object
)

type job struct {
	kind jobKind
	c    ostree.Checksum
	meta ostree.Checksum // jobTree: the directory's dirmeta
}

// jobQueue hands out metadata jobs before content jobs and ends when
// every job is done or one failed.
type jobQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	meta    []job
	files   []job
	pending int // queued or running
	err     error
}

func newJobQueue() *jobQueue {
	q := &jobQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *jobQueue) push(j job) {
	q.mu.Lock()
	if j.kind == jobFile {
		q.files = append(q.files, j)
	} else {
		q.meta = append(q.meta, j)
	}
	q.pending++
	q.mu.Unlock()
	q.cond.Signal()
}

// next blocks until a job is available; false means stop.
func (q *jobQueue) next() (job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.err != nil || q.pending == 0 {
			return job{}, false
		}
		if n := len(q.meta); n > 0 {
			// Depth first: the newest directory is the one whose children
			// are least likely to be known yet.
			j := q.meta[n-1]
			q.meta = q.meta[:n-1]
			return j, true
		}
		if len(q.files) > 0 {
			j := q.files[0]
			q.files = q.files[1:]
			return j, true
		}
		q.cond.Wait()
	}
}

// done marks a job finished.
func (q *jobQueue) done() {
	q.mu.Lock()
	q.pending--
	end := q.pending == 0
	q.mu.Unlock()
	if end {
		q.cond.Broadcast()
	}
}

// fail records the first error and stops the workers.
func (q *jobQueue) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (s *session) runJob(ctx context.Context, txn *ostree.Txn, q *jobQueue, j job) error {
	switch j.kind {
	case jobFile:
		return s.fetchContent(ctx, txn, j.c)
	case jobMeta:
		return s.fetchMetadata(ctx, txn, j.c, ostree.ObjDirMeta)
	}
	if s.claim(txn, j.meta, ostree.ObjDirMeta) {
		q.push(job{kind: jobMeta, c: j.meta})
	}
	if !s.firstVisit(j.c) {
		return nil // another directory with the same tree walks it
	}
	var raw []byte
	var err error
	if s.has(txn, j.c, ostree.ObjDirTree) {
		raw, err = txn.Repo().ReadMetadata(j.c, ostree.ObjDirTree)
	}
	if raw == nil || err != nil {
		s.count()
		if raw, err = s.getMetadata(ctx, j.c, ostree.ObjDirTree); err != nil {
			return err
		}
		if _, err := txn.WriteMetadata(ostree.ObjDirTree, raw, j.c); err != nil {
			return err
		}
		s.fetched()
	}
	dt, err := ostree.ParseDirTree(raw)
	if err != nil {
		return &ostree.ObjectError{Checksum: j.c, Type: ostree.ObjDirTree, Err: err}
	}
	for _, f := range dt.Files {
		if s.claim(txn, f.Checksum, ostree.ObjFile) {
			q.push(job{kind: jobFile, c: f.Checksum})
		}
	}
	for _, d := range dt.Dirs {
		q.push(job{kind: jobTree, c: d.Tree, meta: d.Meta})
	}
	return nil
}

// claim reports whether the caller should fetch the object: it is missing
// and no other goroutine took it.
func (s *session) claim(txn *ostree.Txn, c ostree.Checksum, t ostree.ObjectType) bool {
	k := ostree.ObjectRef{Checksum: c, Type: t}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[k] {
		return false
	}
	s.seen[k] = true
	if s.has(txn, c, t) {
		return false
	}
	s.total++
	s.report()
	return true
}

// has reports whether dst held the object when the walk started (every
// object stored since then is one this session claimed).
func (s *session) has(txn *ostree.Txn, c ostree.Checksum, t ostree.ObjectType) bool {
	if s.local != nil {
		return s.local[ostree.ObjectRef{Checksum: c, Type: t}]
	}
	return txn.HasObject(c, t)
}

// firstVisit reports whether the dirtree was not walked yet.
func (s *session) firstVisit(tree ostree.Checksum) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trees[tree] {
		return false
	}
	s.trees[tree] = true
	return true
}

// count adds one object to fetch to the total.
func (s *session) count() {
	s.mu.Lock()
	s.total++
	s.report()
	s.mu.Unlock()
}

func (s *session) fetched() {
	s.mu.Lock()
	s.done++
	s.report()
	s.mu.Unlock()
}

// report calls Progress; s.mu is held.
func (s *session) report() {
	if s.progress != nil {
		s.progress(s.done, s.total)
	}
}

func (s *session) fetchMetadata(ctx context.Context, txn *ostree.Txn, c ostree.Checksum, t ostree.ObjectType) error {
	b, err := s.getMetadata(ctx, c, t)
	if err != nil {
		return err
	}
	if _, err := txn.WriteMetadata(t, b, c); err != nil {
		return err
	}
	s.fetched()
	return nil
}

// getMetadata fetches a dirtree or dirmeta object under its cap.
func (s *session) getMetadata(ctx context.Context, c ostree.Checksum, t ostree.ObjectType) ([]byte, error) {
	limit := int64(MaxDirTreeSize)
	if t == ostree.ObjDirMeta {
		limit = MaxDirMetaSize
	}
	return s.getObject(ctx, c, t, limit)
}

// getObject fetches a metadata object and checks its hash, trying each
// mirror in turn until one serves it intact.
func (s *session) getObject(ctx context.Context, c ostree.Checksum, t ostree.ObjectType, limit int64) ([]byte, error) {
	var out []byte
	err := s.each(ctx, ostree.ObjectPath(c, t), limit, func(r io.Reader, size int64) error {
		if limit > smallRead && (size < 0 || size > smallRead) {
			select {
			case s.big <- struct{}{}:
				defer func() { <-s.big }()
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		b, err := readAll(r, limit, size)
		if err != nil {
			return err
		}
		if got := ostree.Checksum(sha256.Sum256(b)); got != c {
			return &ostree.ObjectError{Checksum: c, Type: t, Err: fmt.Errorf("%w: bytes hash to %s", ostree.ErrCorrupt, got)}
		}
		out = b
		return nil
	})
	return out, err
}

func (s *session) fetchContent(ctx context.Context, txn *ostree.Txn, c ostree.Checksum) error {
	err := s.each(ctx, ostree.ObjectPath(c, ostree.ObjFile), s.maxObj, func(r io.Reader, _ int64) error {
		return txn.WriteFilez(c, r)
	})
	if err != nil {
		return err
	}
	s.fetched()
	return nil
}

// readAll reads a body into memory without letting the buffer grow past
// limit (httplimit.ReadAll).
func readAll(r io.Reader, limit, size int64) ([]byte, error) {
	b, err := httplimit.ReadAll(r, limit, size)
	if errors.Is(err, httplimit.ErrTooLarge) {
		return nil, fmt.Errorf("%w: body exceeds %d bytes", ostree.ErrTooLarge, limit)
	}
	return b, err
}

// getBytes reads one file from the mirror base.
func (s *session) getBytes(ctx context.Context, base, rel string, limit int64) ([]byte, error) {
	var out []byte
	err := s.get(ctx, base, rel, limit, func(r io.Reader, size int64) error {
		b, err := readAll(r, limit, size)
		out = b
		return err
	})
	return out, err
}

// each runs one GET of rel per mirror, starting with the one that answered
// last, until consume succeeds. The error wraps every mirror's failure.
func (s *session) each(ctx context.Context, rel string, limit int64, consume func(r io.Reader, size int64) error) error {
	n := len(s.p.URLs)
	start := int(s.prefer.Load())
	var errs []error
	for i := range n {
		k := (start + i) % n
		err := s.get(ctx, s.p.URLs[k], rel, limit, consume)
		if err == nil {
			s.prefer.Store(int64(k))
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// get performs one bounded GET (header timeout, throughput floor, overall
// timeout, size cap) and hands the body and its announced size (-1 when
// unknown) to consume.
func (s *session) get(ctx context.Context, base, rel string, limit int64, consume func(r io.Reader, size int64) error) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-s.sem }()

	url := strings.TrimSuffix(base, "/") + "/" + rel
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctx, stop := context.WithTimeoutCause(ctx, s.timeout, fmt.Errorf("%w after %s", ErrTimeout, s.timeout))
	defer stop()
	wrap := func(err error) error {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return fmt.Errorf("GET %s: %w", url, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := httplimit.Do(s.client, req, s.headerTimeout, cancel)
	if err != nil {
		return wrap(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusGone:
		return fmt.Errorf("GET %s: %s: %w", url, resp.Status, ostree.ErrNotFound)
	default:
		return fmt.Errorf("GET %s: %w: %s", url, ErrHTTP, resp.Status)
	}
	if resp.ContentLength > limit {
		return fmt.Errorf("GET %s: %w: %d bytes announced, limit %d", url, ostree.ErrTooLarge, resp.ContentLength, limit)
	}
	body, done := s.watch.Watch(resp.Body, cancel)
	defer done()
	if err := consume(&limitReader{r: body, n: limit}, resp.ContentLength); err != nil {
		return wrap(err)
	}
	return nil
}

// limitReader fails with ostree.ErrTooLarge once more than n bytes arrive,
// instead of truncating silently as io.LimitReader does.
type limitReader struct {
	r    io.Reader
	n    int64
	read int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.read > l.n {
		return 0, fmt.Errorf("%w: body exceeds %d bytes", ostree.ErrTooLarge, l.n)
	}
	if max := l.n + 1 - l.read; int64(len(p)) > max {
		p = p[:max]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.read > l.n {
		return 0, fmt.Errorf("%w: body exceeds %d bytes", ostree.ErrTooLarge, l.n)
	}
	return n, err
}

// GetObject fetches one commit, dirtree, dirmeta or detached metadata
// (.commitmeta) object from the mirrors, under the same limits as Pull
// (header timeout, throughput floor, the type's cap) and trying each
// mirror in turn until one serves it intact: a commit, dirtree or dirmeta
// must hash to c. Detached metadata is returned as served: its signatures
// are the caller's to check.
func (p *Puller) GetObject(ctx context.Context, c ostree.Checksum, t ostree.ObjectType) ([]byte, error) {
	if len(p.URLs) == 0 {
		return nil, errors.New("no mirror URLs configured")
	}
	s := p.newSession()
	defer s.close()
	var b []byte
	var err error
	switch t {
	case ostree.ObjCommit:
		b, err = s.getObject(ctx, c, t, MaxCommitSize)
	case ostree.ObjDirTree, ostree.ObjDirMeta:
		b, err = s.getMetadata(ctx, c, t)
	case ostree.ObjCommitMeta:
		err = s.each(ctx, ostree.ObjectPath(c, t), MaxSignatureSize, func(r io.Reader, size int64) error {
			b, err = readAll(r, MaxSignatureSize, size)
			return err
		})
	default:
		return nil, fmt.Errorf("%s.%s: not a metadata object", c, t)
	}
	if err != nil {
		return nil, fmt.Errorf("fetching %s.%s: %w", c, t, err)
	}
	return b, nil
}

// FetchVerified pulls ref from the repository at url through hc into repo
// and requires its commit to be want: the summary checked with
// summaryKeys, the commit with commitKeys, every object by its name, no
// static deltas. It is what a server sharing a bucket uses to take in a
// release another server published (server.Config.RepoFetch).
func FetchVerified(ctx context.Context, repo *ostree.Repo, url string, hc *http.Client, ref string, want ostree.Checksum, summaryKeys, commitKeys []sign.Verifier) error {
	p := &Puller{URLs: []string{url}, HTTP: hc, NoDeltas: true}
	_, err := p.Pull(ctx, repo, ref, Options{ExpectCommit: want.String(), SummaryKeys: summaryKeys, CommitKeys: commitKeys})
	return err
}
