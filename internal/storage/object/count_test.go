package object_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// failing is a store whose every call fails like an unreachable bucket.
type failing struct{ object.Store }

var errDown = errors.New("connection refused")

func (failing) Get(context.Context, string) (object.Reader, error) { return nil, errDown }
func (failing) PresignGet(context.Context, string, time.Duration) (string, error) {
	return "", errDown
}

// TestCountErrors: answers callers handle (not found, a lost condition, a
// digest mismatch) are not counted; a failing backend is; a presigning
// store stays one.
func TestCountErrors(t *testing.T) {
	ctx := context.Background()
	dir, err := object.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := object.CountErrors(dir)
	if _, ok := c.(object.Presigner); ok {
		t.Error("a counted directory store claims to presign")
	}
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, object.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", strings.NewReader("a"), 1, object.Condition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", strings.NewReader("b"), 1, object.Condition{IfNoneMatch: true}); !errors.Is(err, object.ErrPrecondition) {
		t.Fatal(err)
	}
	if _, err := c.PutVerified(ctx, "v", digest.FromString("x"), 1, strings.NewReader("y")); err == nil {
		t.Fatal("a mismatched PutVerified succeeded")
	}
	if n := c.Errors(); n != 0 {
		t.Fatalf("errors after expected answers = %d, want 0", n)
	}
	f := object.CountErrors(failing{dir})
	if _, err := f.Get(ctx, "k"); !errors.Is(err, errDown) {
		t.Fatal(err)
	}
	p, ok := f.(object.Presigner)
	if !ok {
		t.Fatal("a counted presigning store does not presign")
	}
	if _, err := p.PresignGet(ctx, "k", time.Minute); !errors.Is(err, errDown) {
		t.Fatal(err)
	}
	if n := f.Errors(); n != 2 {
		t.Errorf("errors of a failing store = %d, want 2", n)
	}
}
