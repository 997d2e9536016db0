package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
)

// transientPullError matches the only pull failures a publish running at
// the same time may cause: summary and summary.sig are two files, so a
// client can fetch the signature of one summary and the other summary.
var transientPullError = regexp.MustCompile(`BAD signature`)

// TestPublishWhileServing publishes three new versions while the stock
// client pulls in a loop and a Go reader fetches summary.sig and summary
// (in ostree's order) as fast as it can. Every pull must succeed or fail
// only with a summary/signature mismatch; whenever the reader's pair
// verifies, the commit it names must already be served complete with
// valid signatures; and a final pull must get the newest commit, signed.
// Observed mismatches are logged: they are the race described in
// notes/ostree-formats.md §7.1.
func TestPublishWhileServing(t *testing.T) {
	requireOstreeGPG(t)
	const files = 800
	keys := newKeys(t)
	s := newSite(t, keys)
	src := filepath.Join(t.TempDir(), "src")
	makeBulkTree(t, src, files)
	s.publish(t, "10.0.1", src)
	url, _ := serve(t, s.data)
	c := newClient(t, toolEnv(t), url, gpgRemote(keys.pgpPub)...)
	c.mustRun("pull", "origin", testRef)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup

	// The stock client pulls over and over, at least three times.
	type pullResult struct {
		out string
		err error
		dur time.Duration
	}
	var pulls []pullResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 3 || ctx.Err() == nil; i++ {
			start := time.Now()
			out, err := c.run("pull", "origin", testRef)
			pulls = append(pulls, pullResult{out, err, time.Since(start)})
		}
	}()

	// A Go reader checks every summary it sees.
	var pairs, mismatches atomic.Int64
	readerErrs := make(chan error, 100)
	wg.Add(1)
	go func() {
		defer wg.Done()
		hc := &http.Client{Timeout: 10 * time.Second}
		for ctx.Err() == nil {
			time.Sleep(time.Millisecond) // leave the CPUs to the publisher and ostree
			if err := readSummaryOnce(hc, url, keys, &pairs, &mismatches); err != nil {
				select {
				case readerErrs <- err:
				default:
				}
			}
		}
	}()

	var newest *release.Result
	for i := 2; i <= 4; i++ {
		time.Sleep(150 * time.Millisecond)
		mutateBulkTree(t, src, files, i)
		newest = s.publish(t, fmt.Sprintf("10.0.%d", i), src)
	}
	time.Sleep(150 * time.Millisecond)
	cancel()
	wg.Wait()
	close(readerErrs)
	for err := range readerErrs {
		t.Error(err)
	}

	transient := 0
	for i, p := range pulls {
		t.Logf("pull %d took %s", i, p.dur.Round(time.Millisecond))
		switch {
		case p.err == nil:
		case transientPullError.MatchString(p.out):
			transient++
			t.Logf("pull %d during publishing failed with a transient summary/signature mismatch: %s", i, strings.TrimSpace(p.out))
		default:
			t.Errorf("pull %d during publishing failed: %v\n%s", i, p.err, p.out)
		}
	}
	t.Logf("%d pulls during publishing (%d transient failures); the reader saw %d summary pairs, %d mismatched", len(pulls), transient, pairs.Load(), mismatches.Load())
	if pairs.Load() == 0 {
		t.Errorf("the reader never read a summary")
	}

	// Once publishing is over, the client gets the newest, signed commit.
	c.mustRun("pull", "origin", testRef)
	if got := c.revParse("origin:" + testRef); got != newest.Commit.String() {
		t.Fatalf("final pull got %s, want the newest commit %s", got, newest.Commit)
	}
	cr, err := ostree.Open(c.repo)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cr.ReadMetadata(newest.Commit, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	md, err := cr.ReadCommitMeta(newest.Commit)
	if err != nil {
		t.Fatal(err)
	}
	if err := release.CommitVerifier(keys.verifiers)(newest.Commit, b, md); err != nil {
		t.Errorf("the client's copy of the newest commit: %v", err)
	}
	if out := c.mustRun("show", "origin:"+testRef); !strings.Contains(out, "10.0.4") {
		t.Errorf("ostree show does not name version 10.0.4:\n%s", out)
	}
	if out := c.mustRun("fsck"); !strings.Contains(out, "no errors found") {
		t.Errorf("client fsck:\n%s", out)
	}
}

// readSummaryOnce fetches summary.sig, then summary, as ostree does. A
// pair whose signature does not verify is counted as a mismatch; a pair
// that verifies must name a commit that is served with valid signatures.
func readSummaryOnce(hc *http.Client, url string, keys *keySet, pairs, mismatches *atomic.Int64) error {
	get := func(p string) ([]byte, error) {
		resp, err := hc.Get(url + "/" + p)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", p, resp.Status)
		}
		return b, err
	}
	sig, err := get("summary.sig")
	if err != nil {
		return err
	}
	sum, err := get("summary")
	if err != nil {
		return err
	}
	pairs.Add(1)
	if err := verifySummaryBytes(sum, sig, keys.verifiers); err != nil {
		mismatches.Add(1)
		return nil
	}
	s, err := ostree.ParseSummary(sum)
	if err != nil {
		return fmt.Errorf("signed summary does not parse: %w", err)
	}
	ref, ok := s.Lookup(testRef)
	if !ok {
		return fmt.Errorf("signed summary does not list %s", testRef)
	}
	commit, err := get(ostree.ObjectPath(ref.Checksum, ostree.ObjCommit))
	if err != nil {
		return fmt.Errorf("commit %s named by the signed summary: %w", ref.Checksum, err)
	}
	meta, err := get(ostree.ObjectPath(ref.Checksum, ostree.ObjCommitMeta))
	if err != nil {
		return fmt.Errorf("commitmeta of %s named by the signed summary: %w", ref.Checksum, err)
	}
	md, err := ostree.ParseMetadata(meta)
	if err != nil {
		return fmt.Errorf("commitmeta of %s: %w", ref.Checksum, err)
	}
	if err := release.CommitVerifier(keys.verifiers)(ref.Checksum, commit, md); err != nil {
		return fmt.Errorf("commit %s named by the signed summary: %w", ref.Checksum, err)
	}
	if uint64(len(commit)) > ref.CommitSize {
		return fmt.Errorf("commit %s is %d bytes, the summary allows %d", ref.Checksum, len(commit), ref.CommitSize)
	}
	return nil
}
