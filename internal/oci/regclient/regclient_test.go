package regclient_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mxos-linux/mxos-update/internal/oci/bootimage"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
	"github.com/mxos-linux/mxos-update/internal/oci/regclient"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

const token = "s3cret-token"

// newRegistry serves our registry over HTTP; writes need the token as the
// basic-auth password.
func newRegistry(t *testing.T) (*registry.Store, *httptest.Server) {
	t.Helper()
	st, err := registry.Open(filepath.Join(t.TempDir(), "oci"), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	auth := func(r *http.Request) error {
		_, pw, ok := r.BasicAuth()
		switch {
		case !ok:
			return registry.ErrUnauthorized
		case pw != token:
			return registry.ErrDenied
		}
		return nil
	}
	srv := httptest.NewServer(registry.NewHandler(st, auth, nil))
	t.Cleanup(srv.Close)
	return st, srv
}

func TestBlobsManifestsTags(t *testing.T) {
	ctx := context.Background()
	_, srv := newRegistry(t)
	c, err := regclient.New(srv.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	repo := "mxos/10/x86_64"
	blob := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	d := digest.FromBytes(blob)
	if has, err := c.HasBlob(ctx, repo, d); err != nil || has {
		t.Fatalf("before: %v %v", has, err)
	}
	for range 2 { // the second is a no-op
		if err := c.PutBlob(ctx, repo, d, int64(len(blob)), strings.NewReader(string(blob))); err != nil {
			t.Fatal(err)
		}
	}
	if has, err := c.HasBlob(ctx, repo, d); err != nil || !has {
		t.Fatalf("after: %v %v", has, err)
	}
	rc, err := c.GetBlob(ctx, repo, d)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != string(blob) {
		t.Errorf("blob %q", got)
	}
	m := []byte(`{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageManifest + `","config":{"mediaType":"` +
		v1.MediaTypeImageConfig + `","digest":"` + d.String() + `","size":` + strconv.Itoa(len(blob)) + `},"layers":[]}`)
	md, err := c.PutManifest(ctx, repo, "stable", v1.MediaTypeImageManifest, m)
	if err != nil || md != digest.FromBytes(m) {
		t.Fatalf("put manifest: %s %v", md, err)
	}
	if _, err := c.PutManifest(ctx, repo, "", v1.MediaTypeImageManifest, m); err != nil {
		t.Fatalf("put by digest: %v", err)
	}
	for _, ref := range []string{"stable", md.String()} {
		mt, body, gd, err := c.GetManifest(ctx, repo, ref)
		if err != nil || mt != v1.MediaTypeImageManifest || string(body) != string(m) || gd != md {
			t.Errorf("get %s: %q %s %v", ref, mt, gd, err)
		}
	}
	if _, err := c.PutManifest(ctx, repo, "testing", v1.MediaTypeImageManifest, m); err != nil {
		t.Fatal(err)
	}
	tags, err := c.ListTags(ctx, repo)
	if err != nil || !reflect.DeepEqual(tags, []string{"stable", "testing"}) {
		t.Errorf("tags %v %v", tags, err)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	_, srv := newRegistry(t)
	repo := "mxos/10/x86_64"
	blob := []byte("x")
	d := digest.FromBytes(blob)

	anon, _ := regclient.New(srv.URL, "")
	if err := anon.PutBlob(ctx, repo, d, 1, strings.NewReader("x")); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("no token: %v", err)
	}
	wrong, _ := regclient.New(srv.URL, "wrong")
	err := wrong.PutBlob(ctx, repo, d, 1, strings.NewReader("x"))
	if !errors.Is(err, registry.ErrDenied) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong token: %v", err)
	}
	c, _ := regclient.New(srv.URL, token)
	if _, _, _, err := c.GetManifest(ctx, repo, "nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("missing tag: %v", err)
	}
	if _, err := c.GetBlob(ctx, repo, d); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("missing blob: %v", err)
	}
	// A blob whose bytes do not match the digest is refused by the registry.
	if err := c.PutBlob(ctx, repo, d, 1, strings.NewReader("y")); err == nil {
		t.Error("mismatched blob accepted")
	}
	if err := anon.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	nr, _ := regclient.New(plain.URL, "")
	if err := nr.Ping(ctx); !errors.Is(err, regclient.ErrNoRegistry) {
		t.Errorf("ping a server without a registry: %v", err)
	}
	if _, err := regclient.New("ftp://host", ""); err == nil {
		t.Error("ftp address accepted")
	}
}

// An image built, signed, derived and verified entirely over HTTP.
func TestImageOverHTTP(t *testing.T) {
	ctx := context.Background()
	_, srv := newRegistry(t)
	c, _ := regclient.New(srv.URL, token)
	repo, err := ostree.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	commit := ocitest.Commit(t, repo, "mxos/10/x86_64/testing", "10.0.1", t0, ocitest.OSTree())
	im, err := bootimage.Build(ctx, repo, c, bootimage.BuildRequest{Repository: "mxos/10/x86_64", Arch: "x86_64",
		Version: "10.0.1", Commit: commit, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	if err := ocisig.SignImage(ctx, c, im.Repository, im.Digest, c.Host()+"/"+im.Repository+":testing", key); err != nil {
		t.Fatal(err)
	}
	if err := bootimage.Tag(ctx, c, im, "testing"); err != nil {
		t.Fatal(err)
	}
	if n, err := ocisig.Verify(ctx, c, c.GetBlob, im.Repository, im.Digest, key.Public()); err != nil || n != 1 {
		t.Fatalf("verify: %d %v", n, err)
	}
	promoted := ocitest.Commit(t, repo, "mxos/10/x86_64/stable", "10.0.1", t0.Add(time.Hour), ocitest.OSTree())
	d, err := bootimage.Derive(ctx, c, c.GetBlob, bootimage.DeriveRequest{Repository: im.Repository, From: "testing", Commit: promoted})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Layers, im.Layers) {
		t.Error("derived layers differ")
	}
}
