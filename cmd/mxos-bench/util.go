package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// byteSize is a flag value in bytes that accepts unit suffixes:
// 500MB (decimal), 64MiB (binary), 1.5GB, or plain bytes.
type byteSize int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

func (b *byteSize) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}

func (b *byteSize) String() string { return formatSize(int64(*b)) }

func (b *byteSize) Type() string { return "size" }

func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("invalid size %q: want e.g. 500MB, 64MiB or 1048576", s)
	}
	v := f * mult
	if v > 1<<50 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// formatSize prints bytes with the largest binary unit that divides them
// exactly, else in decimal MB, so String round-trips through Set.
func formatSize(n int64) string {
	switch {
	case n == 0:
		return "0"
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	case n%1e6 == 0:
		return strconv.FormatInt(n/1e6, 10) + "MB"
	}
	return strconv.FormatInt(n, 10)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./=:,+@%", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// diskUsage is what a tree occupies on disk (allocated blocks, like du),
// and how many regular files it has.
func diskUsage(root string) (bytes int64, files int, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			bytes += st.Blocks * 512
		}
		if d.Type().IsRegular() {
			files++
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measuring %s: %w", root, err)
	}
	return bytes, files, nil
}

// readTree reads every regular file under root once and returns the bytes
// read: a warm-up so both sides of a comparison find the tree in the page
// cache (dropping caches needs privileges we do not assume).
func readTree(root string) (int64, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return 0, fmt.Errorf("warm-up: %w", err)
	}
	buf := make([]byte, 1<<20)
	readFile := func(p string) (int64, error) {
		f, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		var n int64
		for {
			m, err := f.Read(buf)
			n += int64(m)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return n, nil
				}
				return n, err
			}
		}
	}
	if !fi.IsDir() {
		n, err := readFile(root)
		if err != nil {
			return n, fmt.Errorf("warm-up: %w", err)
		}
		return n, nil
	}
	var total int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		n, err := readFile(p)
		total += n
		return err
	})
	if err != nil {
		return total, fmt.Errorf("warm-up: %w", err)
	}
	return total, nil
}

// syncFS flushes dirty pages so that writes of one measured run (or the
// deletion of its repository) are not paid for by the next one.
func syncFS() { syscall.Sync() }

// removeAll deletes p unless keep is set.
func removeAll(p string, keep bool) error {
	if keep || p == "" {
		return nil
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}
