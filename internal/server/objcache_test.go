package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestObjCacheBoundedAndClosed(t *testing.T) {
	dir := t.TempDir()
	c := newObjCache(8, 0, time.Hour)
	now := time.Now()
	var files []*os.File
	for i := range 40 {
		p := filepath.Join(dir, fmt.Sprint(i))
		writeFile(t, p, []byte("x"))
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		name := fmt.Sprint("objects/", i)
		if !c.add(name, c.newEntry(f, name, 1, now, now)) {
			f.Close()
		}
		if n := c.n.Load(); n > 8 {
			t.Fatalf("cache holds %d entries, max 8", n)
		}
	}
	c.close()
	if c.n.Load() != 0 {
		t.Fatalf("%d entries left after close", c.n.Load())
	}
	for _, f := range files {
		if _, err := f.Stat(); err == nil {
			t.Fatalf("%s still open after close", f.Name())
		}
	}
	if c.add("late", c.newEntry(nil, "late", 0, now, now)) {
		t.Fatal("add after close succeeded")
	}
}

func TestObjCacheExpiry(t *testing.T) {
	dir := t.TempDir()
	c := newObjCache(8, 0, 20*time.Millisecond)
	defer c.close()
	p := filepath.Join(dir, "obj")
	writeFile(t, p, []byte("x"))
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.add("obj", c.newEntry(f, "obj", 1, now, now))
	if c.get("obj", now) == nil {
		t.Fatal("fresh entry missing")
	}
	if c.get("obj", now.Add(time.Second)) != nil {
		t.Fatal("expired entry returned")
	}
	// The sweeper closes expired entries nobody asks for.
	f2, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	c.add("obj2", c.newEntry(f2, "obj2", 1, now, now))
	deadline := time.Now().Add(5 * time.Second)
	for c.n.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper left %d entries", c.n.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f2.Stat(); err == nil {
		t.Fatal("swept descriptor still open")
	}
}

// TestObjCacheEvictionUnderLoad serves many small objects through a tiny
// cache, so entries are evicted and closed while other requests read them:
// every response must still be complete and correct.
func TestObjCacheEvictionUnderLoad(t *testing.T) {
	data := newDataDir(t)
	const n = 64
	want := make(map[string][]byte)
	for i := range n {
		hex := fmt.Sprintf("%02x%062x", i, i)
		body := bytes.Repeat([]byte{byte(i)}, 100+i*300) // up to ~19 KiB: the copy path, in one write and in several
		name := "objects/" + hex[:2] + "/" + hex[2:] + ".filez"
		writeFile(t, filepath.Join(data, "repo", filepath.FromSlash(name)), body)
		want[name] = body
	}
	s := newTestServer(t, data)
	s.repo.objs.close()
	s.repo.objs = newObjCache(4, DefaultObjectMemory, time.Hour)
	base := startServer(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("objects/%02x/%062x.filez", i%n, i%n)
				resp, err := client.Get(base + "/repo/" + name)
				if err != nil {
					t.Error(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want[name]) {
					t.Errorf("%s: status %d, %d bytes (want %d), err %v", name, resp.StatusCode, len(body), len(want[name]), err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
