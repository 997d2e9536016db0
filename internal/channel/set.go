package channel

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Ext is the file extension of channel definitions.
const Ext = ".yaml"

// maxFileSize bounds a definition file; real ones are about 1 KiB.
const maxFileSize = 1 << 20

// Parse decodes one definition strictly (unknown or repeated keys, a wrong
// type, several documents are errors) and validates it on its own.
func Parse(data []byte) (*Channel, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%w: definition is %d bytes, at most %d allowed", ErrInvalid, len(data), maxFileSize)
	}
	var c Channel
	if err := yaml.Load(data, &c, yaml.WithKnownFields()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and validates the definition at path; its name must be the
// file's base name without ".yaml".
func Load(path string) (*Channel, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, prefixEach(path, err)
	}
	if want := strings.TrimSuffix(filepath.Base(path), Ext); c.Name != want {
		return nil, fmt.Errorf("%s: %w %q: name must match the file name %q", path, ErrInvalid, c.Name, want)
	}
	return c, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read channel definition: %w", err)
	}
	defer f.Close()
	// One byte over the limit is enough for Parse to refuse it.
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read channel definition %s: %w", path, err)
	}
	return data, nil
}

// problems is several independent errors, one per line; Validate and
// NewSet report every problem at once with it.
type problems []error

func (p problems) Error() string {
	lines := make([]string, len(p))
	for i, e := range p {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (p problems) Unwrap() []error { return p }

// join returns nil, the only error, or all of them as problems.
func join(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return problems(errs)
}

// prefixEach puts prefix before every problem, so each line of a report
// names the file.
func prefixEach(prefix string, err error) error {
	p, ok := err.(problems)
	if !ok {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	out := make(problems, len(p))
	for i, e := range p {
		out[i] = fmt.Errorf("%s: %w", prefix, e)
	}
	return out
}

// LoadDir loads every *.yaml file in dir and validates them as a set. A
// *.yml file is an error rather than silently ignored.
func LoadDir(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read channel directory: %w", err)
	}
	var chans []*Channel
	var errs []error
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir() || strings.HasPrefix(name, "."):
			continue
		case strings.HasSuffix(name, ".yml"):
			errs = append(errs, fmt.Errorf("%s: %w: channel definitions end in %s", filepath.Join(dir, name), ErrInvalid, Ext))
			continue
		case !strings.HasSuffix(name, Ext):
			continue
		}
		c, err := Load(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		chans = append(chans, c)
	}
	if err := join(errs); err != nil {
		return nil, err
	}
	if len(chans) == 0 {
		return nil, fmt.Errorf("%w: no *%s channel definitions in %s", ErrInvalid, Ext, dir)
	}
	s, err := NewSet(chans...)
	if err != nil {
		return nil, prefixEach(dir, err)
	}
	return s, nil
}

// Set is a validated collection of channels.
type Set struct {
	byName map[string]*Channel
}

// NewSet validates each channel and the set as a whole: names are unique,
// every promotes_from names a channel of the set, promotion has no cycles,
// and a channel's architectures are a subset of its source's. Every
// problem is returned (joined), each wrapping ErrInvalid.
func NewSet(chans ...*Channel) (*Set, error) {
	s := &Set{byName: make(map[string]*Channel, len(chans))}
	var errs []error
	for _, c := range chans {
		if c == nil {
			errs = append(errs, fmt.Errorf("%w: nil channel", ErrInvalid))
			continue
		}
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := s.byName[c.Name]; dup {
			errs = append(errs, fmt.Errorf("%w %q: defined twice", ErrInvalid, c.Name))
			continue
		}
		s.byName[c.Name] = c
	}
	if err := join(errs); err != nil {
		return nil, err
	}

	// Refs need no uniqueness check: each ends in its own /<arch>/<name>.
	for _, name := range s.Names() {
		c := s.byName[name]
		if c.PromotesFrom == "" {
			continue
		}
		src, ok := s.byName[c.PromotesFrom]
		if !ok {
			errs = append(errs, fmt.Errorf("%w %q: promotes_from names %q, which is not a channel (have %s)", ErrInvalid, name, c.PromotesFrom, strings.Join(s.Names(), ", ")))
			continue
		}
		for _, arch := range c.Arches() {
			if _, ok := src.Refs[arch]; !ok {
				errs = append(errs, fmt.Errorf("%w %q: has a ref for %s but its source %q has none, so promotion could not fill it", ErrInvalid, name, arch, src.Name))
			}
		}
		if cycle := s.cycleFrom(name); cycle != nil {
			errs = append(errs, fmt.Errorf("%w %q: promotion cycle %s", ErrInvalid, name, strings.Join(cycle, " ← ")))
		}
	}
	if err := join(errs); err != nil {
		return nil, err
	}
	return s, nil
}

// cycleFrom follows promotes_from from name and returns the path if it
// comes back to name.
func (s *Set) cycleFrom(name string) []string {
	path := []string{name}
	for cur := s.byName[name]; cur != nil && cur.PromotesFrom != ""; cur = s.byName[cur.PromotesFrom] {
		path = append(path, cur.PromotesFrom)
		if cur.PromotesFrom == name {
			return path
		}
		if len(path) > len(s.byName) { // a cycle that does not include name
			return nil
		}
	}
	return nil
}

// Get returns the channel called name.
func (s *Set) Get(name string) (*Channel, error) {
	if c, ok := s.byName[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownChannel, name, strings.Join(s.Names(), ", "))
}

// Names returns the channel names, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Channels returns the channels sorted by name.
func (s *Set) Channels() []*Channel {
	out := make([]*Channel, 0, len(s.byName))
	for _, n := range s.Names() {
		out = append(out, s.byName[n])
	}
	return out
}

// CanPromote reports whether a release on channel from may be promoted to
// channel to: to must be promoted into, and from must be its source. The
// error wraps ErrUnknownChannel or ErrPromotion and says what is allowed,
// e.g. "stable can only be promoted from testing".
func (s *Set) CanPromote(from, to string) error {
	dst, err := s.Get(to)
	if err != nil {
		return fmt.Errorf("promote to %q: %w", to, err)
	}
	if _, err := s.Get(from); err != nil {
		return fmt.Errorf("promote from %q: %w", from, err)
	}
	switch {
	case from == to:
		return fmt.Errorf("%w: cannot promote %s into itself", ErrPromotion, to)
	case dst.PromotesFrom == "":
		return fmt.Errorf("%w: %s is not promoted into; releases are published to it directly", ErrPromotion, to)
	case dst.PromotesFrom != from:
		return fmt.Errorf("%w: %s can only be promoted from %s", ErrPromotion, to, dst.PromotesFrom)
	}
	return nil
}
