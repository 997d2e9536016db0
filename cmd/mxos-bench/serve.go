package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Objects up to smallObjectMax bytes are "small" in the serve benchmark;
// .filez objects from largeObjectMin bytes are "large".
const (
	smallObjectMax = 64 << 10
	largeObjectMin = 1 << 20
)

// runServe measures mxos-server against nginx on the same repository.
func runServe(ctx context.Context, b *bench) error {
	spec := serveSpec{Small: b.o.smallObjects, Large: b.o.largeObjects, LargeSize: int64(b.o.largeSize), Seed: b.o.seed}
	tree := filepath.Join(b.work, "gen", spec.key())
	if err := os.MkdirAll(filepath.Dir(tree), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(tree), err)
	}
	logf(b.stderr, "serve: generating the tree")
	st, reused, err := cached(tree, func(tmp string) (treeStats, error) { return generateServeTree(tmp, spec) })
	if err != nil {
		return err
	}
	logf(b.stderr, "serve: tree %s (%s)", st, reusedWord(reused))
	data := filepath.Join(b.work, "gen", spec.key()+"-data")
	if _, _, err := cached(data, func(tmp string) (treeStats, error) {
		_, err := b.publishInProcess(ctx, tmp, tree)
		return st, err
	}); err != nil {
		return err
	}
	repo := filepath.Join(data, "repo")
	small, large, err := listObjects(repo)
	if err != nil {
		return err
	}
	if len(small) == 0 || len(large) == 0 {
		return fmt.Errorf("repository %s has %d small and %d large objects; want both", repo, len(small), len(large))
	}
	logf(b.stderr, "serve: %d small objects, %d large objects", len(small), len(large))

	ours, err := b.startOurs(ctx, data, "serve")
	if err != nil {
		return err
	}
	peer, err := b.startNginx(ctx, repo, "serve")
	if err != nil {
		return err
	}

	// Sanity: both servers send the same bytes, and the bytes on disk.
	sample := sampleEvery(small, 64)
	sample = append(sample, large[0], "config", "summary", "refs/heads/"+benchRef)
	if err := compareBodies(ctx, ours, peer, repo, sample); err != nil {
		return err
	}
	b.report.Notes = append(b.report.Notes, fmt.Sprintf(
		"serve: %d sampled paths (objects, config, summary, ref) are byte-identical from mxos-server, nginx and the disk.", len(sample)))

	peerName := "nginx " + nginxVersion(b.report.Machine.Nginx) + ", tuned"
	type phase struct {
		kind, name, unit string
		target           float64
		paths            []string
		rate             func(loadStats) float64
		cpuUnit          string
		cpu              func(loadStats) float64
	}
	var phases []phase
	if slices.Contains(b.o.objects, "small") {
		phases = append(phases, phase{"small", fmt.Sprintf("serve small objects (%d, c=%d)", len(small), b.o.concurrency), "requests/s", 0.9, small,
			loadStats.requestsPerSecond, "CPU-µs/request", loadStats.serverMicrosPerRequest})
	}
	if slices.Contains(b.o.objects, "large") {
		phases = append(phases, phase{"large", fmt.Sprintf("serve large objects (%dx%s, c=%d)", len(large), formatSize(spec.LargeSize), b.o.concurrency), "MB/s", 1.0, large,
			loadStats.megabytesPerSecond, "CPU-ms/GB", loadStats.serverMillisPerGB})
	}
	for _, ph := range phases {
		var oursRates, peerRates, oursCPU, peerCPU, oursRSS, peerRSS []float64
		resetPeakRSS(ours.d.cmd.Process.Pid)
		resetPeakRSS(peer.d.cmd.Process.Pid)
		for round := range b.o.rounds {
			order := []*httpServer{ours, peer}
			if round%2 == 1 {
				order = []*httpServer{peer, ours}
			}
			for _, s := range order {
				seed := b.o.seed + uint64(round)
				if b.o.warmup > 0 {
					// A warmup too short for one whole response on a busy
					// machine (a 4 MiB object in 200 ms) has still warmed up.
					if _, err := runPhase(ctx, s, ph.paths, b.o.concurrency, b.o.warmup, seed^0xabc); err != nil && !errors.Is(err, errNoResponse) {
						return err
					}
				}
				ls, err := runPhase(ctx, s, ph.paths, b.o.concurrency, b.o.duration, seed)
				if err != nil {
					return err
				}
				r, cpu := ph.rate(ls), ph.cpu(ls)
				rss, err := groupPeakRSS(s.d.cmd.Process.Pid)
				if err != nil {
					return err
				}
				logf(b.stderr, "serve: %s round %d/%d %-11s %s %s; server %s %s, client %.2f cores (%d requests, %.1f MB, %d errors)",
					ph.name, round+1, b.o.rounds, s.name, formatValue(r), ph.unit, formatValue(cpu), ph.cpuUnit,
					ls.ClientCPU.Seconds()/ls.Elapsed.Seconds(), ls.Requests, float64(ls.Bytes)/1e6, ls.Errors)
				if s == ours {
					oursRates, oursCPU, oursRSS = append(oursRates, r), append(oursCPU, cpu), append(oursRSS, float64(rss)/1e6)
				} else {
					peerRates, peerCPU, peerRSS = append(peerRates, r), append(peerCPU, cpu), append(peerRSS, float64(rss)/1e6)
				}
			}
		}
		b.report.Rows = append(b.report.Rows,
			newRow("serve", ph.name, ph.unit, peerName, Higher, ph.target, oursRates, peerRates),
			newRow("serve", fmt.Sprintf("serve %s objects: server CPU", ph.kind), ph.cpuUnit, peerName, Lower, 0, oursCPU, peerCPU),
			newRow("serve", fmt.Sprintf("serve %s objects: server peak RSS", ph.kind), "MB", peerName, Lower, 0, oursRSS, peerRSS))
	}
	b.report.Notes = append(b.report.Notes,
		"serve: load generator and server share the machine's cores; \"server CPU\" is the server processes' own user+system time "+
			"(nginx: master and workers) per request or per GB, less sensitive to noise than the rates; \"peak RSS\" is the sum of the "+
			"processes' VmHWM over the phase (nginx's sum counts pages its workers share with the master more than once).",
		"serve: ours is the mxos-server binary with its defaults; nginx has sendfile, tcp_nopush, open_file_cache, access_log off "+
			"and one worker per core.")
	return errors.Join(stopServer(ours), stopServer(peer))
}

func reusedWord(reused bool) string {
	if reused {
		return "reused"
	}
	return "generated"
}

// nginxVersion turns "nginx/1.22.1" into "1.22.1".
func nginxVersion(v string) string {
	if _, after, ok := bytes.Cut([]byte(v), []byte("/")); ok {
		return string(after)
	}
	return v
}

// listObjects returns the repository-relative paths of small objects (any
// type) and large content objects, in a stable order.
func listObjects(repo string) (small, large []string, err error) {
	objects := filepath.Join(repo, "objects")
	err = filepath.WalkDir(objects, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repo, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case fi.Size() <= smallObjectMax:
			small = append(small, rel)
		case fi.Size() >= largeObjectMin && filepath.Ext(p) == ".filez":
			large = append(large, rel)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listing objects of %s: %w", repo, err)
	}
	slices.Sort(small)
	slices.Sort(large)
	return small, large, nil
}

// sampleEvery picks up to n paths spread evenly over ps.
func sampleEvery(ps []string, n int) []string {
	if len(ps) <= n {
		return slices.Clone(ps)
	}
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, ps[i*len(ps)/n])
	}
	return out
}

// compareBodies fetches each path from both servers and checks that the
// bodies hash the same as each other and as the file on disk.
func compareBodies(ctx context.Context, a, b *httpServer, repo string, paths []string) error {
	c := &http.Client{Transport: newTransport(4), Timeout: 2 * time.Minute}
	defer c.CloseIdleConnections()
	for _, p := range paths {
		f, err := os.Open(filepath.Join(repo, filepath.FromSlash(p)))
		if err != nil {
			return fmt.Errorf("sanity check: %w", err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("sanity check: reading %s: %w", p, err)
		}
		want := h.Sum(nil)
		for _, s := range []*httpServer{a, b} {
			got, err := fetchHash(ctx, c, s.base+p)
			if err != nil {
				return fmt.Errorf("sanity check: %s: %w", s.name, err)
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("sanity check: %s sent different bytes for %s than the file holds", s.name, p)
			}
		}
	}
	return nil
}

func fetchHash(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return nil, fmt.Errorf("GET %s: %d bytes, Content-Length %d", url, n, resp.ContentLength)
	}
	return h.Sum(nil), nil
}

// newTransport is the load generator's HTTP client transport: keep-alive
// connections, one per concurrent request, no proxy, no compression.
func newTransport(conc int) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conc,
		MaxIdleConnsPerHost:   conc,
		MaxConnsPerHost:       conc,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
		ReadBufferSize:        64 << 10,
	}
}

// loadStats is what one load phase achieved.
type loadStats struct {
	Requests  int64 // complete, verified responses
	Bytes     int64 // body bytes received, also of responses cut by the deadline
	Errors    int64
	FirstErr  error
	Elapsed   time.Duration
	ServerCPU time.Duration // user+system time of the server's processes
	ClientCPU time.Duration // user+system time of this process
}

func (s loadStats) requestsPerSecond() float64 { return float64(s.Requests) / s.Elapsed.Seconds() }

func (s loadStats) megabytesPerSecond() float64 { return float64(s.Bytes) / 1e6 / s.Elapsed.Seconds() }

func (s loadStats) serverMicrosPerRequest() float64 {
	return float64(s.ServerCPU.Microseconds()) / float64(max(1, s.Requests))
}

func (s loadStats) serverMillisPerGB() float64 {
	return float64(s.ServerCPU.Milliseconds()) / (float64(max(1, s.Bytes)) / 1e9)
}

// runPhase sends GETs for random paths (same sequence for every server
// given the seed) from conc goroutines over keep-alive connections for
// dur. More than 0.1% failed requests fail the phase.
// errNoResponse: a phase in which no request completed.
var errNoResponse = errors.New("no response")

func runPhase(ctx context.Context, s *httpServer, paths []string, conc int, dur time.Duration, seed uint64) (loadStats, error) {
	if err := s.d.exited(); err != nil {
		return loadStats{}, err
	}
	tr := newTransport(conc)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	pctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()

	var mu sync.Mutex
	var total loadStats
	var wg sync.WaitGroup
	pid := s.d.cmd.Process.Pid
	srv0, err := groupCPU(pid)
	if err != nil {
		return total, err
	}
	cli0 := selfCPU()
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			buf := make([]byte, 256<<10)
			var st loadStats
			for pctx.Err() == nil {
				n, err := fetchOne(pctx, c, s.base+paths[rng.IntN(len(paths))], buf)
				st.Bytes += n
				if pctx.Err() != nil {
					break // cut by the deadline: bytes count, the request does not
				}
				if err != nil {
					st.Errors++
					if st.FirstErr == nil {
						st.FirstErr = err
					}
					continue
				}
				st.Requests++
			}
			mu.Lock()
			total.Requests += st.Requests
			total.Bytes += st.Bytes
			total.Errors += st.Errors
			if total.FirstErr == nil {
				total.FirstErr = st.FirstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	total.ClientCPU = selfCPU() - cli0
	srv1, err := groupCPU(pid)
	if err != nil {
		return total, err
	}
	total.ServerCPU = srv1 - srv0
	if err := ctx.Err(); err != nil {
		return total, fmt.Errorf("interrupted: %w", err)
	}
	if total.Errors > 0 && total.Errors*1000 > total.Requests {
		return total, fmt.Errorf("%s: %d of %d requests failed, first: %w", s.name, total.Errors, total.Requests+total.Errors, total.FirstErr)
	}
	if total.Requests == 0 && total.Bytes == 0 {
		return total, fmt.Errorf("%s: %w in %s", s.name, errNoResponse, dur)
	}
	return total, nil
}

// fetchOne GETs url and reads the body, returning the bytes read.
func fetchOne(ctx context.Context, c *http.Client, url string, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("GET %s: %d bytes, Content-Length %d", url, n, resp.ContentLength)
	}
	return n, nil
}
