package channelmeta

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// memFetcher serves a map of files, like a mirror would.
type memFetcher map[string][]byte

const memBase = "mem:/"

func (m memFetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	data, ok := m[strings.TrimPrefix(url, memBase)]
	if !ok {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: url}
	}
	if int64(len(data)) > clampLimit(maxLength) {
		return nil, tooLarge(url, int64(len(data)), maxLength)
	}
	return data, nil
}

// FuzzLoad replaces one file of a genuine repository with fuzzed bytes
// and runs the whole device workflow on it: it must never panic, and it
// must never report a release that the genuine targets do not contain.
func FuzzLoad(f *testing.F) {
	fx := newFixture(f, t0, Options{})
	fx.publish(f, t0)
	files := map[string][]byte{}
	entries, err := os.ReadDir(fx.dir)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		files[e.Name()] = readFile(f, fx.dir, e.Name())
	}
	names := []string{
		timestampFile,
		versioned(versionOf(f, fx.dir, snapshotFile), snapshotFile),
		versioned(versionOf(f, fx.dir, targetsFile), targetsFile),
		versioned(versionOf(f, fx.dir, rolloutsFile), rolloutsFile),
		"2.root.json",
	}
	for i, n := range names {
		if data, ok := files[n]; ok {
			f.Add(uint8(i), data)
			f.Add(uint8(i), data[:len(data)/2])
		}
	}
	f.Add(uint8(4), files[rootFile])
	f.Add(uint8(0), []byte(`{"signed":{"_type":"timestamp","version":99,"expires":"2030-01-01T00:00:00Z","meta":{}},"signatures":[]}`))

	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		mirror := memFetcher{}
		for k, v := range files {
			mirror[k] = v
		}
		mirror[names[int(which)%len(names)]] = data
		c, err := NewClient(ClientConfig{TrustedRoot: fx.root, CacheDir: t.TempDir(), Dir: fx.dir, Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		c.base = memBase
		c.fetcherFor = func(context.Context) fetcher.Fetcher { return mirror }
		st, err := c.Load(context.Background())
		if err != nil {
			return
		}
		for _, r := range st.Releases {
			want := false
			for _, g := range testReleases() {
				want = want || (g.Path() == r.Path() && g.Commit == r.Commit)
			}
			if !want {
				t.Fatalf("fuzzed metadata produced release %+v", r)
			}
		}
	})
}

// FuzzRecords feeds arbitrary custom JSON to the record parsers, with
// hashes that match its canonical form when it has one (so the decoding
// and validation behind the hash check are reached).
func FuzzRecords(f *testing.F) {
	for _, r := range testReleases() {
		b, _ := cjson.EncodeCanonical(r)
		f.Add(r.Path(), b)
	}
	ro := testRollout(f)
	b, _ := cjson.EncodeCanonical(ro)
	f.Add(ro.Path(), b)
	f.Add("releases/a/b/c", []byte(`{"channel":"a","arch":"b","version":"c","commit":1.5}`))
	f.Add("rollouts/a/b", []byte(`null`))
	f.Fuzz(func(t *testing.T, path string, custom []byte) {
		raw := json.RawMessage(custom)
		tf := &metadata.TargetFiles{Length: int64(len(custom)), Hashes: metadata.Hashes{"sha256": make([]byte, 32)}, Custom: &raw}
		if json.Valid(custom) {
			if canon, err := cjson.EncodeCanonical(raw); err == nil {
				if h, err := metadata.TargetFile().FromBytes(path, canon); err == nil {
					tf.Length, tf.Hashes = h.Length, h.Hashes
				}
			}
		}
		if rel, err := parseRelease(path, tf); err == nil {
			if rel.Path() != path || rel.Validate() != nil {
				t.Fatalf("accepted release %+v at %q", rel, path)
			}
			if _, err := releaseTarget(rel); err != nil {
				t.Fatalf("accepted release does not re-encode: %v", err)
			}
		}
		if s, err := parseRollout(path, tf); err == nil {
			if s.Path() != path || s.Validate() != nil {
				t.Fatalf("accepted rollout %+v at %q", s, path)
			}
		}
	})
}
