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
// Every response body is bounded (metadata by ostree.MaxMetadataSize or the
// signed commit size, content by Puller.MaxObjectSize), every request has a
// deadline and a throughput floor, and each object is tried on every mirror
// in turn. Objects the destination already has are not fetched (they are
// found by listing its object directories once, not by a stat per object),
// so a pull interrupted after some objects were committed resumes where it
// stopped, and an update fetches only what changed. Parallel workers fetch
// directories before file contents, so the whole tree is known early.
// The local ref is moved last, after ostree checks the commit is complete,
// so a failed pull leaves the refs as they were.
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
	ErrTooSlow = errors.New("transfer below minimum throughput")
	// ErrHTTP: the server answered with an unexpected status.
	ErrHTTP = errors.New("unexpected HTTP status")
)

// Defaults applied to zero fields of Puller.
const (
	DefaultParallel          = 8
	DefaultMaxObjectSize     = 4 << 30
	DefaultTimeout           = 10 * time.Minute
	DefaultMinBytesPerSecond = 1024
	DefaultGrace             = 30 * time.Second
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
	// name for the ref.
	ExpectCommit string
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

	sref, err := s.summary(ctx, ref)
	if err != nil {
		return zero, fmt.Errorf("pull %s: %w", ref, err)
	}
	c := sref.Checksum
	if !expect.IsZero() && c != expect {
		return zero, fmt.Errorf("pull %s: %w: summary names %s, expected %s", ref, ErrUnexpectedCommit, c, expect)
	}
	commitBytes, commit, md, fetchedMeta, err := s.commit(ctx, dst, ref, sref)
	if err != nil {
		return zero, fmt.Errorf("pull %s: commit %s: %w", ref, c, err)
	}
	if err := checkPolicy(ref, c, commit, opts); err != nil {
		return zero, fmt.Errorf("pull %s: commit %s: %w", ref, c, err)
	}

	txn, err := dst.Begin()
	if err != nil {
		return zero, fmt.Errorf("pull %s: %w", ref, err)
	}
	defer txn.Close()
	complete := dst.HasObject(c, ostree.ObjCommit) && dst.CheckComplete(c) == nil
	if !complete {
		werr := s.walk(ctx, txn, commit.RootTree, commit.RootMeta)
		if werr == nil {
			if _, err := txn.WriteMetadata(ostree.ObjCommit, commitBytes, c); err != nil {
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
	if fetchedMeta {
		if err := txn.WriteCommitMeta(c, md); err != nil {
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
	p        *Puller
	client   *http.Client
	sem      chan struct{}
	maxObj   int64
	timeout  time.Duration
	minRate  int64
	grace    time.Duration
	prefer   atomic.Int64 // index of the mirror that last answered
	mu       sync.Mutex
	seen     map[ostree.ObjectRef]bool
	trees    map[ostree.Checksum]bool
	done     int
	total    int
	progress func(done, total int)
	// local holds the objects dst had when the walk started.
	local map[ostree.ObjectRef]bool

	xmu       sync.Mutex
	xfers     map[*transfer]struct{}
	stopWatch chan struct{}

	// sumKeys verify summary.sig, commitKeys the commit (Options).
	sumKeys, commitKeys []sign.Verifier
}

func (p *Puller) newSession() *session {
	s := &session{p: p, client: p.HTTP, maxObj: p.MaxObjectSize, timeout: p.Timeout,
		minRate: p.MinBytesPerSecond, grace: p.Grace, seen: map[ostree.ObjectRef]bool{}, trees: map[ostree.Checksum]bool{}, progress: p.Progress}
	n := p.Parallel
	if n <= 0 {
		n = DefaultParallel
	}
	s.sem = make(chan struct{}, n)
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
	if s.minRate == 0 {
		s.minRate = DefaultMinBytesPerSecond
	}
	if s.grace <= 0 {
		s.grace = DefaultGrace
	}
	return s
}

// summary fetches and verifies the summary from the first mirror that
// serves a validly signed one, and looks up ref in it.
func (s *session) summary(ctx context.Context, ref string) (ostree.SummaryRef, error) {
	var errs []error
	for _, base := range s.p.URLs {
		sum, err := s.summaryFrom(ctx, base)
		if err != nil {
			errs = append(errs, fmt.Errorf("mirror %s: %w", base, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		r, ok := sum.Lookup(ref)
		if !ok {
			return r, fmt.Errorf("%w (mirror %s)", ErrNoRef, base)
		}
		return r, nil
	}
	return ostree.SummaryRef{}, fmt.Errorf("summary: %w", errors.Join(errs...))
}

func (s *session) summaryFrom(ctx context.Context, base string) (*ostree.Summary, error) {
	sigBytes, err := s.getBytes(ctx, base, "summary.sig", ostree.MaxMetadataSize)
	if errors.Is(err, ostree.ErrNotFound) {
		return nil, fmt.Errorf("%w: no summary.sig: %w", ErrUnsigned, err)
	}
	if err != nil {
		return nil, err
	}
	sumBytes, err := s.getBytes(ctx, base, "summary", ostree.MaxMetadataSize)
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
// when it has them and they verify, from the mirrors otherwise, and checks
// the signatures. fetchedMeta reports whether md came from a mirror.
func (s *session) commit(ctx context.Context, dst *ostree.Repo, ref string, sref ostree.SummaryRef) (raw []byte, commit *ostree.Commit, md ostree.Metadata, fetchedMeta bool, err error) {
	c := sref.Checksum
	limit := int64(ostree.MaxMetadataSize)
	if sref.CommitSize > 0 && sref.CommitSize < uint64(limit) {
		limit = int64(sref.CommitSize)
	}
	if dst.HasObject(c, ostree.ObjCommit) {
		if b, rerr := dst.ReadMetadata(c, ostree.ObjCommit); rerr == nil {
			raw = b
		}
	}
	if raw == nil {
		if raw, err = s.getBytes(ctx, "", ostree.ObjectPath(c, ostree.ObjCommit), limit); err != nil {
			return nil, nil, nil, false, err
		}
		if got := ostree.Checksum(sha256.Sum256(raw)); got != c {
			return nil, nil, nil, false, fmt.Errorf("%w: commit bytes hash to %s", ostree.ErrCorrupt, got)
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
	mb, err := s.getBytes(ctx, "", ostree.ObjectPath(c, ostree.ObjCommitMeta), ostree.MaxMetadataSize)
	if errors.Is(err, ostree.ErrNotFound) {
		return nil, nil, nil, false, fmt.Errorf("%w: no detached metadata: %w", ErrUnsigned, err)
	}
	if err != nil {
		return nil, nil, nil, false, err
	}
	md, err = ostree.ParseMetadata(mb)
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("commitmeta: %w: %w", ErrBadSignature, err)
	}
	if err := verify(c, raw, md); err != nil {
		return nil, nil, nil, false, verifyErr("commit", err)
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

// getMetadata fetches a metadata object and checks its hash, trying each
// mirror in turn.
func (s *session) getMetadata(ctx context.Context, c ostree.Checksum, t ostree.ObjectType) ([]byte, error) {
	var out []byte
	err := s.each(ctx, ostree.ObjectPath(c, t), ostree.MaxMetadataSize, func(r io.Reader) error {
		b, err := io.ReadAll(r)
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
	err := s.each(ctx, ostree.ObjectPath(c, ostree.ObjFile), s.maxObj, func(r io.Reader) error {
		return txn.WriteFilez(c, r)
	})
	if err != nil {
		return err
	}
	s.fetched()
	return nil
}

// getBytes reads one file, from base or, when base is empty, from each
// mirror in turn.
func (s *session) getBytes(ctx context.Context, base, rel string, limit int64) ([]byte, error) {
	var out []byte
	read := func(r io.Reader) error {
		b, err := io.ReadAll(r)
		out = b
		return err
	}
	if base != "" {
		return out, s.get(ctx, base, rel, limit, read)
	}
	return out, s.each(ctx, rel, limit, read)
}

// each runs one GET of rel per mirror, starting with the one that answered
// last, until consume succeeds. The error wraps every mirror's failure.
func (s *session) each(ctx context.Context, rel string, limit int64, consume func(io.Reader) error) error {
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

// get performs one bounded GET and hands the body to consume.
func (s *session) get(ctx context.Context, base, rel string, limit int64, consume func(io.Reader) error) error {
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
	resp, err := s.client.Do(req)
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
	body := &meter{r: resp.Body}
	if s.minRate > 0 {
		defer s.watchTransfer(body, cancel)()
	}
	if err := consume(&limitReader{r: body, n: limit}); err != nil {
		return wrap(err)
	}
	return nil
}

// transfer is a response body being read, for the throughput floor.
type transfer struct {
	m      *meter
	cancel context.CancelCauseFunc
	last   int64     // bytes read at the start of the window
	since  time.Time // start of the window
}

// watchTransfer puts a body under the session's throughput watch until
// the returned function is called. One goroutine watches every transfer
// of the session, so a small object costs no goroutine or timer of its own.
func (s *session) watchTransfer(m *meter, cancel context.CancelCauseFunc) func() {
	t := &transfer{m: m, cancel: cancel, since: time.Now()}
	s.xmu.Lock()
	if s.xfers == nil {
		s.xfers = map[*transfer]struct{}{}
		s.stopWatch = make(chan struct{})
		go s.watch(s.stopWatch)
	}
	s.xfers[t] = struct{}{}
	s.xmu.Unlock()
	return func() {
		s.xmu.Lock()
		delete(s.xfers, t)
		s.xmu.Unlock()
	}
}

// watch cancels each transfer that received fewer than minRate bytes per
// second over a window of at least grace, until stop is closed.
func (s *session) watch(stop <-chan struct{}) {
	tick := time.NewTicker(max(s.grace/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			s.xmu.Lock()
			for t := range s.xfers {
				elapsed := now.Sub(t.since)
				if elapsed < s.grace {
					continue
				}
				n := t.m.n.Load()
				if float64(n-t.last)/elapsed.Seconds() < float64(s.minRate) {
					t.cancel(fmt.Errorf("%w: %d bytes in %s, floor %d B/s", ErrTooSlow, n-t.last, elapsed.Round(time.Millisecond), s.minRate))
					delete(s.xfers, t)
					continue
				}
				t.last, t.since = n, now
			}
			s.xmu.Unlock()
		}
	}
}

// close stops the session's watcher.
func (s *session) close() {
	s.xmu.Lock()
	if s.stopWatch != nil {
		close(s.stopWatch)
		s.stopWatch, s.xfers = nil, nil
	}
	s.xmu.Unlock()
}

// meter counts the bytes read through it.
type meter struct {
	r io.Reader
	n atomic.Int64
}

func (m *meter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.n.Add(int64(n))
	return n, err
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
