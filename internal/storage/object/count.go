package object

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Counted is a Store that counts its failures (for the server's metrics,
// mxos_storage_errors_total): every call that failed for another reason
// than the answers callers expect and handle (ErrNotFound,
// ErrPrecondition, a refused key, a digest or size mismatch of
// PutVerified, a cancelled context). It is a Presigner when the store it
// wraps is one.
type Counted interface {
	Store
	// Errors is the number of failures so far.
	Errors() int64
}

// CountErrors wraps s.
func CountErrors(s Store) Counted {
	c := &counted{s: s}
	if p, ok := s.(Presigner); ok {
		return &countedPresigner{counted: c, p: p}
	}
	return c
}

type counted struct {
	s Store
	n atomic.Int64
}

type countedPresigner struct {
	*counted
	p Presigner
}

func (c *countedPresigner) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	u, err := c.p.PresignGet(ctx, key, ttl)
	return u, c.note(err)
}

func (c *counted) Errors() int64 { return c.n.Load() }

// expected are the errors callers decide on; anything else is a failure.
var expected = []error{ErrNotFound, ErrPrecondition, ErrBadKey, context.Canceled, context.DeadlineExceeded}

func (c *counted) note(err error) error {
	if err == nil {
		return nil
	}
	for _, e := range expected {
		if errors.Is(err, e) {
			return err
		}
	}
	c.n.Add(1)
	return err
}

func (c *counted) Get(ctx context.Context, key string) (Reader, error) {
	r, err := c.s.Get(ctx, key)
	return r, c.note(err)
}

func (c *counted) Stat(ctx context.Context, key string) (Info, error) {
	i, err := c.s.Stat(ctx, key)
	return i, c.note(err)
}

func (c *counted) Put(ctx context.Context, key string, r io.Reader, size int64, cond Condition) (Info, error) {
	i, err := c.s.Put(ctx, key, r, size, cond)
	return i, c.note(err)
}

// PutVerified's mismatches are the uploader's fault, not the storage's:
// they are not counted.
func (c *counted) PutVerified(ctx context.Context, key string, d digest.Digest, size int64, r io.Reader) (Info, error) {
	i, err := c.s.PutVerified(ctx, key, d, size, r)
	if isMismatch(err) {
		return i, err
	}
	return i, c.note(err)
}

func (c *counted) Touch(ctx context.Context, key string) error { return c.note(c.s.Touch(ctx, key)) }

func (c *counted) Delete(ctx context.Context, key string) error { return c.note(c.s.Delete(ctx, key)) }

func (c *counted) List(ctx context.Context, prefix string, fn func(Info) error) error {
	return c.note(c.s.List(ctx, prefix, fn))
}

func isMismatch(err error) bool {
	return errors.Is(err, storage.ErrDigestMismatch) || errors.Is(err, storage.ErrSizeMismatch)
}
