// Package tlogstore owns the server side of the public release
// transparency log: the C2SP tlog-tiles log in one directory (DATA/log),
// written with github.com/transparency-dev/tessera's POSIX driver, and the
// Ed25519 log key that signs its checkpoints.
//
// Decisions:
//   - One process appends to a directory at a time (tessera takes fcntl
//     locks, so the directory must not be on NFS).
//   - Append returns once the entry is sequenced, which tessera makes
//     durable; the entry shows in a published checkpoint within the
//     checkpoint interval (DefaultCheckpointInterval). AppendPublished
//     waits for that too.
//   - The log key is a note signer key (golang.org/x/mod/sumdb/note) in a
//     file of its own outside the served directory, by default
//     DATA/log-key. When it does not exist it is generated with the origin
//     given, written with mode 0600 (temp file, fsync, rename, fsync of the
//     directory), and its public verifier key is written next to it as
//     <file>.pub for publishing. A key file readable by group or others is
//     refused, as ssh does. The key's name is the log's origin.
//   - Re-adding identical bytes may return the earlier index (tessera's
//     in-memory antispam); uniqueness of releases is the database's job.
//   - Witnesses (Options.WitnessPolicy, C2SP tlog-policy text as tessera
//     reads it: `witness NAME VKEY URL`, `group NAME K|any|all MEMBERS`,
//     `quorum NAME`): tessera sends each new checkpoint to the witnesses
//     (C2SP tlog-witness) and publishes it only with the cosignatures the
//     policy needs, never without them (no fail-open: devices that
//     require witnesses would refuse it anyway). While the witnesses do
//     not answer, nothing new is published, and AppendPublished gives up
//     after Options.WitnessWait, so a release waits rather than goes out unseen.
package tlogstore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/mxos-linux/mxos-update/internal/tlog"
)

// DefaultOrigin names a log whose key is generated without an origin.
const DefaultOrigin = "mxos-update/releases"

// DefaultCheckpointInterval is how often a new checkpoint is published
// when entries were added.
const DefaultCheckpointInterval = time.Second

// Options configure Open.
type Options struct {
	// Dir is the log directory; everything in it but .state/ is public.
	Dir string
	// KeyFile is the log's note signer key; generated when missing.
	KeyFile string
	// Origin names the log when the key is generated (DefaultOrigin if
	// empty); an existing key keeps its own name.
	Origin string
	// CheckpointInterval (DefaultCheckpointInterval when zero; tessera's
	// minimum is 100ms).
	CheckpointInterval time.Duration
	// WitnessPolicy, when set, is the witnesses that must cosign every
	// published checkpoint (see the package doc).
	WitnessPolicy []byte
	// WitnessWait bounds how long AppendPublished waits for a cosigned
	// checkpoint (DefaultWitnessWait when zero).
	WitnessWait time.Duration
}

// ErrWitnesses: no checkpoint with the cosignatures the witness policy
// needs was published in time.
var ErrWitnesses = errors.New("the transparency log's witnesses did not cosign a checkpoint")

// DefaultWitnessWait bounds how long AppendPublished waits for a
// checkpoint when witnesses must cosign it.
const DefaultWitnessWait = 2 * time.Minute

// witnessTimeout bounds one round of asking the witnesses.
const witnessTimeout = 10 * time.Second

// Log is an open, appendable log.
type Log struct {
	dir         string
	app         *tessera.Appender
	shutdown    func(context.Context) error
	reader      tessera.LogReader
	awaiter     *tessera.PublicationAwaiter
	cancel      context.CancelFunc
	witnessed   bool
	witnessWait time.Duration
	vkey        string
	origin      string

	mu      sync.Mutex            // guards the release index (prove.go)
	index   map[releaseKey]uint64 // newest entry of each release
	indexed uint64                // entries indexed so far
}

// Open opens (creating if needed) the log in o.Dir and its key.
func Open(ctx context.Context, o Options) (*Log, error) {
	if o.Dir == "" || o.KeyFile == "" {
		return nil, errors.New("transparency log: a directory and a key file are needed")
	}
	if o.Origin == "" {
		o.Origin = DefaultOrigin
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	signer, vkey, err := LoadOrCreateKey(o.KeyFile, o.Origin)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("transparency log: %w", err)
	}
	// The appender's background work outlives the caller's ctx; Close
	// stops it.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	drv, err := posix.New(bg, posix.Config{Path: o.Dir})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("transparency log: opening %s: %w", o.Dir, err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(o.CheckpointInterval).
		WithBatching(256, 50*time.Millisecond).
		WithAntispam(tessera.DefaultAntispamInMemorySize, nil)
	if len(o.WitnessPolicy) > 0 {
		g, err := tessera.NewWitnessGroupFromPolicy(o.WitnessPolicy)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("transparency log: witness policy: %w", err)
		}
		opts = opts.WithWitnesses(g, &tessera.WitnessOptions{Timeout: witnessTimeout})
		if o.WitnessWait <= 0 {
			o.WitnessWait = DefaultWitnessWait
		}
	}
	app, shutdown, reader, err := tessera.NewAppender(bg, drv, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("transparency log: opening %s: %w", o.Dir, err)
	}
	return &Log{dir: o.Dir, app: app, shutdown: shutdown, reader: reader, cancel: cancel, vkey: vkey, origin: signer.Name(), witnessed: len(o.WitnessPolicy) > 0, witnessWait: o.WitnessWait,
		awaiter: tessera.NewPublicationAwaiter(bg, reader.ReadCheckpoint, 50*time.Millisecond)}, nil
}

// Dir is the log directory.
func (l *Log) Dir() string { return l.dir }

// Origin is the log's origin, the first line of its checkpoints.
func (l *Log) Origin() string { return l.origin }

// VerifierKey is the public key that verifies checkpoints, in the note
// verifier format ("origin+hash+base64").
func (l *Log) VerifierKey() string { return l.vkey }

// Reader reads what the log has published.
func (l *Log) Reader() tessera.LogReader { return l.reader }

// Append adds e and returns its index once it is sequenced (durable).
func (l *Log) Append(ctx context.Context, e tlog.Entry) (uint64, error) {
	b, err := e.Marshal()
	if err != nil {
		return 0, err
	}
	idx, err := l.app.Add(ctx, tessera.NewEntry(b))()
	if err != nil {
		return 0, fmt.Errorf("transparency log: appending %s entry: %w", e.Kind, err)
	}
	return idx.Index, nil
}

// AppendPublished adds entries and waits until published checkpoints
// cover them all; it returns their indexes and the last checkpoint seen.
func (l *Log) AppendPublished(ctx context.Context, entries ...tlog.Entry) ([]uint64, []byte, error) {
	if _, ok := ctx.Deadline(); !ok && l.witnessed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.witnessWait)
		defer cancel()
	}
	futs := make([]tessera.IndexFuture, len(entries))
	for i, e := range entries {
		b, err := e.Marshal()
		if err != nil {
			return nil, nil, err
		}
		futs[i] = l.app.Add(ctx, tessera.NewEntry(b))
	}
	idxs := make([]uint64, len(entries))
	var cp []byte
	for i, f := range futs {
		idx, c, err := l.awaiter.Await(ctx, f)
		if err != nil && l.witnessed && ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%w within %s (%s entry)", ErrWitnesses, l.witnessWait, entries[i].Kind)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("transparency log: appending %s entry: %w", entries[i].Kind, err)
		}
		idxs[i], cp = idx.Index, c
	}
	return idxs, cp, nil
}

// Close publishes what is pending (within ctx) and stops the appender.
func (l *Log) Close(ctx context.Context) error {
	err := l.shutdown(ctx)
	l.cancel()
	if err != nil {
		return fmt.Errorf("transparency log: shutting down: %w", err)
	}
	return nil
}

// LoadOrCreateKey reads the note signer key in file, or generates one
// named origin when file does not exist (see the package doc). It returns
// the signer and its verifier key.
func LoadOrCreateKey(file, origin string) (note.Signer, string, error) {
	raw, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		skey, vkey, err := note.GenerateKey(rand.Reader, origin)
		if err != nil {
			return nil, "", fmt.Errorf("transparency log: generating the log key named %q: %w", origin, err)
		}
		if err := writeDurable(file, []byte(skey+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("transparency log: writing the log key: %w", err)
		}
		if err := writeDurable(file+".pub", []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("transparency log: writing the log's public key: %w", err)
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			return nil, "", fmt.Errorf("transparency log: the generated key: %w", err)
		}
		return s, vkey, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("transparency log: reading the log key: %w", err)
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, "", fmt.Errorf("transparency log: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("transparency log: the log key %s is readable by others (mode %v): chmod 600 it", file, st.Mode().Perm())
	}
	skey := strings.TrimSpace(string(raw))
	s, err := note.NewSigner(skey)
	if err != nil {
		// The note error could quote the key; say only where it is.
		return nil, "", fmt.Errorf("transparency log: %s is not a note signer key (PRIVATE+KEY+…)", file)
	}
	vkey, err := VerifierKeyOf(skey)
	if err != nil {
		return nil, "", fmt.Errorf("transparency log: %s: %w", file, err)
	}
	return s, vkey, nil
}

// VerifierKeyOf derives the verifier key of a note signer key.
func VerifierKeyOf(skey string) (string, error) {
	// PRIVATE+KEY+<name>+<hash>+<base64(alg||seed)>
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key")
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// writeDurable writes b to file through a temp file, fsync, rename and
// an fsync of the directory; it refuses to replace an existing file.
func writeDurable(file string, b []byte, perm os.FileMode) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, file); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LoadSeq reads a counter saved by SaveSeq; a missing file is 0.
func LoadSeq(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: not a sequence number", file)
	}
	return n, nil
}

// SaveSeq replaces file with n durably.
func SaveSeq(file string, n int64) error {
	return WriteFile(file, []byte(strconv.FormatInt(n, 10)+"\n"))
}

// WriteFile replaces file with b durably (temp file, fsync, rename,
// fsync of the directory).
func WriteFile(file string, b []byte) error {
	tmp := file + ".tmp"
	_ = os.Remove(tmp)
	if err := writeDurable(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(file))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
