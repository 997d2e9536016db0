package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// memBytes sums the bytes held by c's in-memory entries.
func memBytes(c *objCache) (held int64, entries int) {
	c.m.Range(func(_, v any) bool {
		if e := v.(*cachedObject); e.f == nil {
			held += int64(len(e.data))
			entries++
		}
		return true
	})
	return held, entries
}

func TestObjCacheMemoryBounded(t *testing.T) {
	dir := t.TempDir()
	const memMax = 40 << 10
	c := newObjCache(1000, memMax, time.Hour)
	now := time.Now()
	for i := range 200 {
		size := int64(1 + i*97%memObjectMax)
		p := filepath.Join(dir, fmt.Sprint(i))
		writeFile(t, p, bytes.Repeat([]byte{byte(i)}, int(size)))
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprint("objects/", i)
		e := c.newEntry(f, name, size, now, now)
		c.load(e)
		if !c.add(name, e) {
			c.discard(e)
		}
		held, _ := memBytes(c)
		if got := c.mem.Load(); got > memMax || held != got {
			t.Fatalf("after %d objects: %d bytes reserved, %d held, bound %d", i+1, got, held, memMax)
		}
	}
	if _, n := memBytes(c); n == 0 {
		t.Fatal("no object kept in memory")
	}
	c.close()
	if got := c.mem.Load(); got != 0 {
		t.Fatalf("%d bytes still reserved after close", got)
	}
}

func TestObjCacheMemoryDisabled(t *testing.T) {
	dir := t.TempDir()
	c := newObjCache(8, 0, time.Hour)
	defer c.close()
	p := filepath.Join(dir, "obj")
	writeFile(t, p, []byte("x"))
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e := c.newEntry(f, "obj", 1, now, now)
	c.load(e)
	if e.f == nil || e.data != nil {
		t.Fatal("bytes kept in memory with a zero budget")
	}
	_ = f.Close()
}

// writeObjects writes n objects of the given sizes (cycled) with random
// content and returns them by repository path.
func writeObjects(t *testing.T, data string, n int, sizes ...int) map[string][]byte {
	t.Helper()
	objs := make(map[string][]byte, n)
	for i := range n {
		body := make([]byte, sizes[i%len(sizes)])
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		hex := fmt.Sprintf("%02x%062x", i%256, i)
		name := "objects/" + hex[:2] + "/" + hex[2:] + ".filez"
		writeFile(t, filepath.Join(data, "repo", filepath.FromSlash(name)), body)
		objs[name] = body
	}
	return objs
}

// TestObjCacheMemoryUnderLoad serves many distinct objects through a small
// memory budget from concurrent clients: every body is right, and the
// bytes held never exceed the budget.
func TestObjCacheMemoryUnderLoad(t *testing.T) {
	data := newDataDir(t)
	objs := writeObjects(t, data, 300, 100, 3<<10, 9<<10, 16<<10, 20<<10)
	names := make([]string, 0, len(objs))
	for name := range objs {
		names = append(names, name)
	}
	const memMax = 64 << 10
	s, err := New(Config{DataDir: data, ObjectMemory: memMax})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	base := startServer(t, s)
	c := s.repo.objs

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var wg sync.WaitGroup
	// Bytes are reserved before they are read and released after their
	// entry left the map, so the reservation bounds what is held at every
	// instant. (A Range over the map during the load is no snapshot.)
	wg.Go(func() {
		for ctx.Err() == nil {
			if got := c.mem.Load(); got > memMax {
				t.Errorf("%d bytes reserved, bound %d", got, memMax)
				return
			}
		}
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	for g := range 8 {
		wg.Go(func() {
			for i := g * 37; ctx.Err() == nil; i++ {
				name := names[i%len(names)]
				resp, err := client.Get(base + "/repo/" + name)
				if err != nil {
					t.Error(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, objs[name]) {
					t.Errorf("%s: status %d, %d bytes (want %d), err %v", name, resp.StatusCode, len(body), len(objs[name]), err)
					return
				}
			}
		})
	}
	wg.Wait()
	held, n := memBytes(c)
	if n == 0 {
		t.Error("no object kept in memory")
	}
	if got := c.mem.Load(); held != got || got > memMax {
		t.Errorf("at rest: %d bytes held, %d reserved, bound %d", held, got, memMax)
	}
}

// TestObjCacheMemoryContent checks that the bytes kept in memory are the
// file's, and that only objects up to memObjectMax are kept.
func TestObjCacheMemoryContent(t *testing.T) {
	data := newDataDir(t)
	objs := writeObjects(t, data, 6, 0, 1, 4<<10, memObjectMax, memObjectMax+1, 30<<10)
	s := newTestServer(t, data)
	base := startServer(t, s)
	for name, want := range objs {
		for range 3 { // the first request, the one that caches, a hit
			resp, body := do(t, http.MethodGet, base+"/repo/"+name)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
				t.Fatalf("%s: status %d, %d bytes, want %d", name, resp.StatusCode, len(body), len(want))
			}
		}
		e := s.repo.objs.get(name, time.Now())
		if e == nil {
			t.Fatalf("%s (%d bytes) not cached", name, len(want))
		}
		if inMem := e.f == nil; inMem != (len(want) <= memObjectMax) {
			t.Errorf("%s (%d bytes): in memory = %v", name, len(want), inMem)
		}
		if e.f == nil && !bytes.Equal(e.data, want) {
			t.Errorf("%s: cached bytes differ from the file", name)
		}
	}
}

// TestObjCacheMemoryTTL: an object replaced or pruned on disk may be
// served from memory until the TTL, never after, and the sweeper returns
// its bytes to the budget.
func TestObjCacheMemoryTTL(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	pruned := "objects/ab/" + hexA + ".filez"
	replaced := "objects/cd/" + hexB + ".filez"
	writeFile(t, filepath.Join(repo, filepath.FromSlash(pruned)), []byte("pruned"))
	writeFile(t, filepath.Join(repo, filepath.FromSlash(replaced)), []byte("old"))
	s := newTestServer(t, data)
	s.repo.objs.close()
	s.repo.objs = newObjCache(objCacheMax, DefaultObjectMemory, 50*time.Millisecond)
	base := startServer(t, s)

	get := func(name string) (int, string) {
		resp, body := do(t, http.MethodGet, base+"/repo/"+name)
		return resp.StatusCode, string(body)
	}
	for range 2 { // the first request, then the one that caches
		if st, body := get(pruned); st != http.StatusOK || body != "pruned" {
			t.Fatalf("pruned object before: %d %q", st, body)
		}
		if st, body := get(replaced); st != http.StatusOK || body != "old" {
			t.Fatalf("replaced object before: %d %q", st, body)
		}
	}
	if got := s.repo.objs.mem.Load(); got != int64(len("pruned")+len("old")) {
		t.Fatalf("%d bytes in memory, want %d", got, len("pruned")+len("old"))
	}
	if err := os.Remove(filepath.Join(repo, filepath.FromSlash(pruned))); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(repo, filepath.FromSlash(replaced)), []byte("new"))

	time.Sleep(120 * time.Millisecond)
	if st, _ := get(pruned); st != http.StatusNotFound {
		t.Errorf("pruned object after the TTL: status %d, want 404", st)
	}
	if st, body := get(replaced); st != http.StatusOK || body != "new" {
		t.Errorf("replaced object after the TTL: %d %q, want the new bytes", st, body)
	}
	// Nobody asks for the replaced object again: the sweeper drops it.
	deadline := time.Now().Add(5 * time.Second)
	for s.repo.objs.mem.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still in memory after the sweeps", s.repo.objs.mem.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestObjCacheAdmitsOnSecondRequest: the first request of an object is
// served without caching it (a pull asks for each object once); the
// second caches it; both answer the file's bytes with the same headers.
func TestObjCacheAdmitsOnSecondRequest(t *testing.T) {
	data := newDataDir(t)
	objs := writeObjects(t, data, 4, 1, 4<<10, memObjectMax, 30<<10)
	s := newTestServer(t, data)
	base := startServer(t, s)
	for name, want := range objs {
		var first http.Header
		for i := range 2 {
			resp, body := do(t, http.MethodGet, base+"/repo/"+name)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
				t.Fatalf("%s request %d: status %d, %d bytes, want %d", name, i+1, resp.StatusCode, len(body), len(want))
			}
			resp.Header.Del("Date")
			if i == 0 {
				first = resp.Header
				if e := s.repo.objs.get(name, time.Now()); e != nil {
					t.Fatalf("%s (%d bytes) cached by its first request", name, len(want))
				}
				continue
			}
			if !reflect.DeepEqual(resp.Header, first) {
				t.Errorf("%s: headers differ between the first and the cached answer:\n%v\n%v", name, first, resp.Header)
			}
			if e := s.repo.objs.get(name, time.Now()); e == nil {
				t.Errorf("%s (%d bytes) not cached by its second request", name, len(want))
			}
		}
	}
}
