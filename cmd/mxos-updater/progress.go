package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// progress prints "N of M objects" on one terminal line, at most every
// 200 ms; newProgress returns nil off a terminal (journald, pipes), where
// only the agent's plain messages are written.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	last time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &progress{w: w}
}

func (p *progress) count(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	final := done == total
	if !final && time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r\033[K%d of %d objects", done, total)
	if final {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
