package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/opencontainers/go-digest"
)

// distributionModule is the peer of the registry benchmark, built from the
// Go module proxy on first use and cached under the user's cache directory.
const (
	distributionModule  = "github.com/distribution/distribution/v3/cmd/registry"
	distributionVersion = "v3.1.2"
	benchRegistryRepo   = "bench/blobs"
)

// distributionConf is the peer's configuration: filesystem storage, no
// auth, logs and traces off, the in-memory descriptor cache its docs
// recommend for a single instance.
const distributionConf = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:%d
  debug:
    addr: ""
`

// registryBlob is one blob pushed to both registries.
type registryBlob struct {
	digest string
	size   int64
	path   string // file holding the bytes
}

// runRegistry measures blob pulls from our registry against
// distribution/distribution v3 serving the same blobs.
func runRegistry(ctx context.Context, b *bench) error {
	bin, err := b.distributionBinary(ctx)
	if err != nil {
		return err
	}
	type phase struct {
		name  string
		count int
		size  int64
	}
	phases := []phase{{"1 MB", 16, 1 << 20}, {"100 MB", 2, 100 << 20}}
	if b.o.quick {
		phases = []phase{{"1 MB", 4, 1 << 20}, {"8 MB", 1, 8 << 20}}
	}
	blobDir, err := b.scratchDir("registry-blobs")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", blobDir, err)
	}
	var all []registryBlob
	perPhase := map[string][]registryBlob{}
	for i, ph := range phases {
		for j := range ph.count {
			bl, err := writeRandomBlob(blobDir, b.o.seed+uint64(i*1000+j), ph.size)
			if err != nil {
				return err
			}
			perPhase[ph.name] = append(perPhase[ph.name], bl)
			all = append(all, bl)
		}
	}

	data, err := b.scratchDir("registry-ours")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(data, "repo"), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", data, err)
	}
	if err := putOurBlobs(ctx, data, benchRegistryRepo, all); err != nil {
		return err
	}
	ours, err := b.startOurs(ctx, data, "registry")
	if err != nil {
		return err
	}
	ours.base = ours.base[:len(ours.base)-len("repo/")] + "v2/"
	peer, err := b.startDistribution(ctx, bin)
	if err != nil {
		return err
	}
	for _, bl := range all {
		if err := pushBlob(ctx, peer.base, benchRegistryRepo, bl); err != nil {
			return fmt.Errorf("pushing to distribution: %w", err)
		}
	}
	// Sanity: both registries send the blob's bytes.
	c := &http.Client{Transport: newTransport(2), Timeout: 5 * time.Minute}
	for _, bl := range all {
		for _, s := range []*httpServer{ours, peer} {
			got, err := fetchHash(ctx, c, s.base+benchRegistryRepo+"/blobs/"+bl.digest)
			if err != nil {
				return fmt.Errorf("sanity check: %s: %w", s.name, err)
			}
			if "sha256:"+hex.EncodeToString(got) != bl.digest {
				return fmt.Errorf("sanity check: %s sent other bytes for %s", s.name, bl.digest)
			}
		}
	}
	c.CloseIdleConnections()
	b.report.Notes = append(b.report.Notes, fmt.Sprintf(
		"registry: %d blobs, each verified by digest from both registries before timing.", len(all)))

	peerName := "distribution " + distributionVersion
	for _, ph := range phases {
		var paths []string
		for _, bl := range perPhase[ph.name] {
			paths = append(paths, benchRegistryRepo+"/blobs/"+bl.digest)
		}
		name := fmt.Sprintf("registry blob pulls %s (%d blobs, c=%d)", ph.name, ph.count, b.o.concurrency)
		var oursRates, peerRates, oursCPU, peerCPU []float64
		for round := range b.o.rounds {
			order := []*httpServer{ours, peer}
			if round%2 == 1 {
				order = []*httpServer{peer, ours}
			}
			for _, s := range order {
				seed := b.o.seed + uint64(round)
				if b.o.warmup > 0 {
					if _, err := runPhase(ctx, s, paths, b.o.concurrency, b.o.warmup, seed^0xabc); err != nil {
						return err
					}
				}
				ls, err := runPhase(ctx, s, paths, b.o.concurrency, b.o.duration, seed)
				if err != nil {
					return err
				}
				r, cpu := ls.megabytesPerSecond(), ls.serverMillisPerGB()
				logf(b.stderr, "registry: %s round %d/%d %-12s %s MB/s; server %s CPU-ms/GB (%d requests)",
					ph.name, round+1, b.o.rounds, s.name, formatValue(r), formatValue(cpu), ls.Requests)
				if s == ours {
					oursRates, oursCPU = append(oursRates, r), append(oursCPU, cpu)
				} else {
					peerRates, peerCPU = append(peerRates, r), append(peerCPU, cpu)
				}
			}
		}
		b.report.Rows = append(b.report.Rows,
			newRow("registry", name, "MB/s", peerName, Higher, 1.0, oursRates, peerRates),
			newRow("registry", fmt.Sprintf("registry blob pulls %s: server CPU", ph.name), "CPU-ms/GB", peerName, Lower, 0, oursCPU, peerCPU))
	}
	return errors.Join(stopServer(ours), stopServer(peer))
}

// writeRandomBlob writes size incompressible bytes and returns the blob.
func writeRandomBlob(dir string, seed uint64, size int64) (registryBlob, error) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	src := rand.NewChaCha8(key)
	f, err := os.CreateTemp(dir, "blob-*")
	if err != nil {
		return registryBlob{}, fmt.Errorf("creating a blob: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(src, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return registryBlob{}, fmt.Errorf("writing a blob: %w", err)
	}
	return registryBlob{digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), size: size, path: f.Name()}, nil
}

// pushBlob uploads a blob with the spec's POST-then-PUT monolithic flow.
func pushBlob(ctx context.Context, base, repo string, bl registryBlob) error {
	c := &http.Client{Timeout: 5 * time.Minute}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+repo+"/blobs/uploads/", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("starting an upload: %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("starting an upload: %w", err)
	}
	q := loc.Query()
	q.Set("digest", bl.digest)
	loc.RawQuery = q.Encode()
	f, err := os.Open(bl.path)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), f)
	if err != nil {
		return err
	}
	req.ContentLength = bl.size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("uploading %s: %s: %s", bl.digest, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// distributionBinary returns the peer registry binary: --distribution, or
// one built with `go install` from the module proxy into the user cache.
func (b *bench) distributionBinary(ctx context.Context) (string, error) {
	if b.o.distribution != "" {
		return b.o.distribution, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "mxos-bench", "distribution-"+distributionVersion)
	bin := filepath.Join(dir, "registry")
	if fileExists(bin) {
		return bin, nil
	}
	logf(b.stderr, "registry: building %s@%s from the module proxy (once)", distributionModule, distributionVersion)
	cmd := exec.CommandContext(ctx, "go", "install", distributionModule+"@"+distributionVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building distribution: %w: %s", err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// startDistribution starts the peer registry on a scratch directory.
func (b *bench) startDistribution(ctx context.Context, bin string) (*httpServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := b.scratchDir("distribution")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		return nil, fmt.Errorf("distribution directory: %w", err)
	}
	conf := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, distributionConf, filepath.Join(dir, "storage"), port), 0o644); err != nil {
		return nil, fmt.Errorf("writing distribution config: %w", err)
	}
	cmd := exec.Command(bin, "serve", conf)
	// distribution v3 exports traces to localhost:4318 unless told not to.
	cmd.Env = childEnviron("OTEL_TRACES_EXPORTER=none")
	d, err := b.procs.start("distribution", cmd)
	if err != nil {
		return nil, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port) + "/v2/"
	s := &httpServer{name: "distribution", base: base, d: d, ready: base}
	if err := waitReady(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// putOurBlobs stores the blobs in data/oci through the registry's own
// store (the serve child has no token database to push with) and makes
// the empty repository the child's readiness probe reads.
func putOurBlobs(ctx context.Context, data, repo string, blobs []registryBlob) error {
	if _, err := ostree.Create(filepath.Join(data, "repo")); err != nil {
		return err
	}
	st, err := registry.Open(filepath.Join(data, "oci"), registry.Options{})
	if err != nil {
		return err
	}
	for _, bl := range blobs {
		f, err := os.Open(bl.path)
		if err != nil {
			return err
		}
		err = st.PutBlob(ctx, repo, digest.Digest(bl.digest), bl.size, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("storing %s: %w", bl.digest, err)
		}
	}
	return nil
}
