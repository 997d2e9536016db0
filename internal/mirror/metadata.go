package mirror

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// metaName is every metadata file name a device asks for or a human
// reads: root, timestamp, snapshot, targets and rollouts, current or
// versioned (the names the server serves).
var metaName = regexp.MustCompile(`^(?:([1-9][0-9]{0,18})\.)?(root|timestamp|snapshot|targets|rollouts)\.json$`)

// metaCopy is a verified copy of the upstream's metadata.
type metaCopy struct {
	files map[string][]byte // versioned files and timestamp.json
	state *channelmeta.State
}

// fetchMetadata fetches the upstream's channel metadata with a fresh
// cache from the trusted root, recording every file go-tuf accepts, then
// verifies the recorded files again against the mirror's own baseline
// (rollback and expiry against what it served before).
func (s *syncer) fetchMetadata(ctx context.Context) (*metaCopy, error) {
	state := filepath.Join(s.cfg.Dir, StateDir)
	tmp, err := os.MkdirTemp(state, "fetch-")
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	defer os.RemoveAll(tmp)
	rt := s.cfg.HTTP.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	rec := &recorder{rt: rt, files: map[string][]byte{}}
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: s.cfg.TrustedRoot, CacheDir: filepath.Join(tmp, "cache"),
		URL: s.base + "/" + MetadataDir + "/", HTTPClient: &http.Client{Transport: rec, Timeout: 60 * time.Second},
		Now: s.cfg.Now, UserAgent: "mxos-server-mirror"})
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "cache"), 0o700); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if _, err := c.Load(ctx); err != nil {
		return nil, fmt.Errorf("mirror: %w: %w", ErrMetadata, err)
	}
	files := rec.taken()
	stage := filepath.Join(tmp, "stage")
	if err := os.Mkdir(stage, 0o700); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(stage, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
	}
	cache := filepath.Join(state, "metadata-cache")
	if err := storage.MkdirAll(cache, 0o700); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	c2, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: s.cfg.TrustedRoot, CacheDir: cache, Dir: stage, Now: s.cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	st, err := c2.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w: against what this mirror already served: %w", ErrMetadata, err)
	}
	// go-tuf renames its cache files into place without fsync.
	if err := syncTree(cache); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	return &metaCopy{files: files, state: st}, nil
}

// publishMetadata writes a verified copy into DATA/metadata: versioned
// files first (root chain, rollouts, targets, snapshot), then the current
// copies, timestamp.json last, so a device never follows a name to a
// missing file. Versioned snapshot, targets and rollouts files more than
// two versions old are then removed.
func (s *syncer) publishMetadata(m *metaCopy) error {
	dir := filepath.Join(s.cfg.Dir, MetadataDir)
	st := m.state
	files := map[string][]byte{}
	for k, v := range m.files {
		files[k] = v
	}
	rootName := fmt.Sprintf("%d.root.json", st.RootVersion)
	if _, ok := files[rootName]; !ok {
		// No rotation since the shipped root: serve it as is.
		files[rootName] = s.cfg.TrustedRoot
	}
	current := map[string]int64{"root": st.RootVersion, "snapshot": st.SnapshotVersion, "targets": st.TargetsVersion, "rollouts": st.RolloutsVersion}
	for role, v := range current {
		name := fmt.Sprintf("%d.%s.json", v, role)
		b, ok := files[name]
		if !ok {
			b, _ = os.ReadFile(filepath.Join(dir, name))
		}
		if b == nil {
			return fmt.Errorf("mirror: channel metadata: %s was neither fetched nor stored", name)
		}
		files[role+".json"] = b
	}
	names := make([]string, 0, len(files))
	for n := range files {
		if metaName.MatchString(n) {
			names = append(names, n)
		}
	}
	channelmeta.SortForWrite(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, files[n]) {
			continue
		}
		if err := storage.WriteFile(p, files[n], 0o644); err != nil {
			return fmt.Errorf("mirror: channel metadata: %w", err)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("mirror: channel metadata: %w", err)
	}
	for _, e := range ents {
		m := metaName.FindStringSubmatch(e.Name())
		if m == nil || m[1] == "" || m[2] == "root" || m[2] == "timestamp" {
			continue
		}
		if v, _ := strconv.ParseInt(m[1], 10, 64); v < current[m[2]]-2 {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				s.cfg.Log.Warn("removing old channel metadata", zap.Error(err))
			}
		}
	}
	return storage.SyncDir(dir)
}

// recorder is a RoundTripper that keeps the body of every successful
// response whose name is a metadata file name, as it is read.
type recorder struct {
	rt    http.RoundTripper
	mu    sync.Mutex
	files map[string][]byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.rt.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	name := path.Base(req.URL.Path)
	if !metaName.MatchString(name) {
		return resp, nil
	}
	resp.Body = &teeBody{ReadCloser: resp.Body, r: r, name: name}
	return resp, nil
}

// taken returns the recorded files.
func (r *recorder) taken() map[string][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]byte, len(r.files))
	for k, v := range r.files {
		out[k] = v
	}
	return out
}

type teeBody struct {
	io.ReadCloser
	r    *recorder
	name string
	buf  bytes.Buffer
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if t.buf.Len() <= channelmeta.MaxFileSize {
		t.buf.Write(p[:n])
	}
	return n, err
}

func (t *teeBody) Close() error {
	if t.buf.Len() <= channelmeta.MaxFileSize {
		t.r.mu.Lock()
		t.r.files[t.name] = bytes.Clone(t.buf.Bytes())
		t.r.mu.Unlock()
	}
	return t.ReadCloser.Close()
}

// syncTree fsyncs every regular file in dir, then dir.
func syncTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return storage.SyncDir(dir)
}
