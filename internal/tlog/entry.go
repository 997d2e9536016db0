// Package tlog owns the public release transparency log's formats: the
// canonical text of one log entry (this file) and the checks anyone can run
// on what the log serves (checkpoint signatures, inclusion and consistency
// proofs, verify.go). It is pure and small, and imports neither tessera nor
// server code, so the device agent may use it.
//
// The log itself is a C2SP tlog-tiles log (https://c2sp.org/tlog-tiles)
// written by internal/tlogstore with github.com/transparency-dev/tessera
// and served by mxos-server at /log/. Its checkpoints are C2SP signed notes
// (https://c2sp.org/signed-note) signed with an Ed25519 log key whose name
// is the log's origin.
//
// # Entry format
//
// An entry is UTF-8 text of at most MaxEntrySize bytes: the schema line,
// then one "name value" line per field, in the fixed order below, each
// ending in "\n". Fields a kind does not use are left out; nothing else may
// appear, so every entry has exactly one encoding and Parse refuses any
// other (Parse(b).Marshal() == b).
//
//	mxos-release-log/v1
//	kind release
//	channel stable
//	arch x86_64
//	version 10.2.1
//	commit <64 hex: the OSTree commit checksum>
//	image sha256:<64 hex: the OCI image digest, when there is one>
//	key <16 hex: the release key set id, KeySetID>
//	from testing            (promotions: the channel promoted from)
//	ramp 5%,25%@48h,100%    (rollout-start)
//	group lab-3             (group-pin, group-unpin)
//	time 2026-12-07T05:51:03Z
//
// Only what may be public goes in: no device ids, no user or token names,
// no host names. Values are single words of printable ASCII without
// spaces, at most MaxValueSize bytes each.
package tlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Schema is the first line of every entry.
const Schema = "mxos-release-log/v1"

// Size limits of an entry and of one value in it.
const (
	MaxEntrySize = 512
	MaxValueSize = 128
)

// Kind says what an entry records.
type Kind string

// The kinds of entries.
const (
	KindRelease          Kind = "release"
	KindPromotion        Kind = "promotion"
	KindRolloutStart     Kind = "rollout-start"
	KindRolloutPause     Kind = "rollout-pause"
	KindRolloutHalt      Kind = "rollout-halt"
	KindRolloutResume    Kind = "rollout-resume"
	KindRolloutComplete  Kind = "rollout-complete"
	KindGroupPin         Kind = "group-pin"
	KindGroupUnpin       Kind = "group-unpin"
	KindKeyRotation      Kind = "key-rotation"
	KindMetadataRotation Kind = "metadata-rotation"
)

// Entry is one record of the log. Time is kept to the second, in UTC.
type Entry struct {
	Kind    Kind
	Channel string
	Arch    string
	Version string
	Commit  string // OSTree commit checksum, 64 lowercase hex
	Image   string // OCI image digest, "sha256:" + 64 hex, or ""
	Key     string // release key set id, 16 lowercase hex, or ""
	From    string // promotions: the source channel
	Ramp    string // rollout-start: the ramp
	Group   string // group pins: the group
	Time    time.Time
}

// ErrInvalidEntry is wrapped by every refusal of Parse and Marshal.
var ErrInvalidEntry = errors.New("invalid log entry")

// field is one line of the format, in order.
type field struct {
	name string
	get  func(*Entry) *string
}

var fields = []field{
	{"channel", func(e *Entry) *string { return &e.Channel }},
	{"arch", func(e *Entry) *string { return &e.Arch }},
	{"version", func(e *Entry) *string { return &e.Version }},
	{"commit", func(e *Entry) *string { return &e.Commit }},
	{"image", func(e *Entry) *string { return &e.Image }},
	{"key", func(e *Entry) *string { return &e.Key }},
	{"from", func(e *Entry) *string { return &e.From }},
	{"ramp", func(e *Entry) *string { return &e.Ramp }},
	{"group", func(e *Entry) *string { return &e.Group }},
}

// required lists, per kind, the fields an entry of that kind must have;
// allowed adds those it may have.
var required = map[Kind][]string{
	KindRelease:          {"channel", "arch", "version", "commit"},
	KindPromotion:        {"channel", "arch", "version", "commit", "from"},
	KindRolloutStart:     {"channel", "arch", "version", "ramp"},
	KindRolloutPause:     {"channel", "arch", "version"},
	KindRolloutHalt:      {"channel", "arch", "version"},
	KindRolloutResume:    {"channel", "arch", "version"},
	KindRolloutComplete:  {"channel", "arch", "version"},
	KindGroupPin:         {"group"},
	KindGroupUnpin:       {"group"},
	KindKeyRotation:      {"key"},
	KindMetadataRotation: {},
}

var allowed = map[Kind][]string{
	KindRelease:          {"image", "key"},
	KindPromotion:        {"image", "key"},
	KindGroupPin:         {"channel", "arch", "version"},
	KindGroupUnpin:       {"channel", "arch"},
	KindMetadataRotation: {"key"},
}

// Marshal returns the canonical text of e, after checking it.
func (e Entry) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(Schema + "\n")
	b.WriteString("kind " + string(e.Kind) + "\n")
	for _, f := range fields {
		if v := *f.get(&e); v != "" {
			b.WriteString(f.name + " " + v + "\n")
		}
	}
	b.WriteString("time " + e.Time.UTC().Format(time.RFC3339) + "\n")
	if b.Len() > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidEntry, b.Len(), MaxEntrySize)
	}
	return b.Bytes(), nil
}

// Validate checks that e can be logged: a known kind, the fields it needs
// and no others, well-formed values.
func (e Entry) Validate() error {
	req, ok := required[e.Kind]
	if !ok {
		return fmt.Errorf("%w: unknown kind %q", ErrInvalidEntry, trunc(string(e.Kind)))
	}
	for _, f := range fields {
		v := *f.get(&e)
		switch {
		case v == "" && slices.Contains(req, f.name):
			return fmt.Errorf("%w: a %s entry needs a %s", ErrInvalidEntry, e.Kind, f.name)
		case v == "":
		case !slices.Contains(req, f.name) && !slices.Contains(allowed[e.Kind], f.name):
			return fmt.Errorf("%w: a %s entry has no %s", ErrInvalidEntry, e.Kind, f.name)
		default:
			if err := checkValue(f.name, v); err != nil {
				return err
			}
		}
	}
	if e.Time.IsZero() || e.Time.Year() < 2000 || e.Time.Year() > 9999 {
		return fmt.Errorf("%w: no valid time", ErrInvalidEntry)
	}
	if e.Time.Nanosecond() != 0 {
		return fmt.Errorf("%w: time has fractions of a second", ErrInvalidEntry)
	}
	return nil
}

func checkValue(name, v string) error {
	if len(v) > MaxValueSize {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidEntry, name, MaxValueSize)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: %s %q has a space or a character that is not printable ASCII", ErrInvalidEntry, name, trunc(v))
		}
	}
	switch name {
	case "commit":
		if !isHex(v, 64) {
			return fmt.Errorf("%w: commit %q is not 64 lowercase hex digits", ErrInvalidEntry, trunc(v))
		}
	case "image":
		if h, ok := strings.CutPrefix(v, "sha256:"); !ok || !isHex(h, 64) {
			return fmt.Errorf("%w: image %q is not sha256:<64 hex>", ErrInvalidEntry, trunc(v))
		}
	case "key":
		if !isHex(v, 16) {
			return fmt.Errorf("%w: key %q is not 16 lowercase hex digits", ErrInvalidEntry, trunc(v))
		}
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Parse reads an entry in its canonical encoding and refuses anything
// else: unknown schema or fields, fields out of order, missing or extra
// fields for the kind, non-canonical time.
func Parse(b []byte) (Entry, error) {
	var e Entry
	if len(b) > MaxEntrySize {
		return e, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidEntry, len(b), MaxEntrySize)
	}
	s, ok := strings.CutPrefix(string(b), Schema+"\n")
	if !ok {
		return e, fmt.Errorf("%w: does not start with %q", ErrInvalidEntry, Schema)
	}
	if !strings.HasSuffix(s, "\n") {
		return e, fmt.Errorf("%w: does not end with a newline", ErrInvalidEntry)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 2 {
		return e, fmt.Errorf("%w: too few lines", ErrInvalidEntry)
	}
	kind, ok := strings.CutPrefix(lines[0], "kind ")
	if !ok {
		return e, fmt.Errorf("%w: the second line is not the kind", ErrInvalidEntry)
	}
	e.Kind = Kind(kind)
	next := 0
	for _, line := range lines[1 : len(lines)-1] {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			return e, fmt.Errorf("%w: line %q is not \"name value\"", ErrInvalidEntry, trunc(line))
		}
		i := slices.IndexFunc(fields[next:], func(f field) bool { return f.name == name })
		if i < 0 {
			return e, fmt.Errorf("%w: unknown, repeated or misplaced field %q", ErrInvalidEntry, trunc(name))
		}
		f := fields[next+i]
		next += i + 1
		if v == "" {
			return e, fmt.Errorf("%w: empty %s", ErrInvalidEntry, name)
		}
		*f.get(&e) = v
	}
	ts, ok := strings.CutPrefix(lines[len(lines)-1], "time ")
	if !ok {
		return e, fmt.Errorf("%w: the last line is not the time", ErrInvalidEntry)
	}
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil || t.Location() != time.UTC || t.Format(time.RFC3339) != ts {
		return e, fmt.Errorf("%w: time %q is not RFC 3339 UTC to the second", ErrInvalidEntry, trunc(ts))
	}
	e.Time = t
	if err := e.Validate(); err != nil {
		return e, err
	}
	return e, nil
}

// KeySetID names a set of release keys in entries: the first 8 bytes, in
// hex, of SHA-256 over their sorted ids, one per line (mxos-server uses
// "<ostree sign type>:<public key or fingerprint>"). It changes when the
// set does, so a release key rotation shows in the log.
func KeySetID(keyIDs []string) string {
	ids := slices.Clone(keyIDs)
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Describe says what e records in plain words, for people reading the log.
func (e Entry) Describe() string {
	t := e.Time.UTC().Format("2006-01-02 15:04:05Z")
	var s string
	switch e.Kind {
	case KindRelease:
		s = fmt.Sprintf("released %s %s for %s, commit %s", e.Channel, e.Version, e.Arch, short(e.Commit))
	case KindPromotion:
		s = fmt.Sprintf("promoted %s for %s from %s to %s, commit %s", e.Version, e.Arch, e.From, e.Channel, short(e.Commit))
	case KindRolloutStart:
		s = fmt.Sprintf("started the rollout of %s %s for %s (ramp %s)", e.Channel, e.Version, e.Arch, e.Ramp)
	case KindRolloutPause, KindRolloutHalt, KindRolloutResume, KindRolloutComplete:
		verb := map[Kind]string{KindRolloutPause: "paused", KindRolloutHalt: "halted", KindRolloutResume: "resumed", KindRolloutComplete: "completed"}[e.Kind]
		s = fmt.Sprintf("%s the rollout of %s %s for %s", verb, e.Channel, e.Version, e.Arch)
	case KindGroupPin:
		s = strings.Join(strings.Fields("pinned group "+e.Group+" to "+e.Channel+" "+e.Version), " ")
	case KindGroupUnpin:
		s = "unpinned group " + e.Group
	case KindKeyRotation:
		s = fmt.Sprintf("rotated the release keys to key set %s", e.Key)
	case KindMetadataRotation:
		s = "rotated the channel metadata keys"
	default:
		s = string(e.Kind)
	}
	if e.Image != "" {
		s += ", image " + short(strings.TrimPrefix(e.Image, "sha256:"))
	}
	if e.Key != "" && e.Kind != KindKeyRotation {
		s += ", release keys " + e.Key
	}
	return t + "  " + s
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
