package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/api"
)

func TestPublishCalls(t *testing.T) {
	const tok = "mxos_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path)
		if strings.HasPrefix(r.URL.Path, "/api/") && r.Header.Get("Authorization") != "Bearer "+tok {
			t.Errorf("%s without the token", r.URL.Path)
		}
		switch r.Method + " " + r.URL.Path {
		case "POST /api/v1/uploads":
			json.NewEncoder(w).Encode(api.UploadSession{ID: "s1"})
		case "POST /api/v1/uploads/s1/missing":
			var req api.MissingRequest
			json.NewDecoder(r.Body).Decode(&req)
			json.NewEncoder(w).Encode(api.MissingResponse{Missing: req.Objects[:1]})
		case "PUT /api/v1/uploads/s1/objects/abc.filez":
			b, _ := io.ReadAll(r.Body)
			if string(b) != "bytes" || r.ContentLength != 5 {
				t.Errorf("object body %q (%d)", b, r.ContentLength)
			}
			w.WriteHeader(http.StatusNoContent)
		case "POST /api/v1/uploads/s1/commit":
			w.WriteHeader(http.StatusNoContent)
		case "POST /api/v1/releases":
			var req api.ReleaseRequest
			json.NewDecoder(r.Body).Decode(&req)
			if req.PromotedFrom == "testing" {
				w.WriteHeader(http.StatusConflict)
				json.NewEncoder(w).Encode(api.ErrorBody{Error: api.Errorf(api.CodePromotion, "edu can only be promoted from stable")})
				return
			}
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(api.Release{Channel: req.Channel, Version: req.Version})
		case "GET /api/v1/releases":
			if r.URL.Query().Get("channel") != "stable" {
				t.Errorf("query %s", r.URL.RawQuery)
			}
			json.NewEncoder(w).Encode([]api.Release{{Version: "10.0.2"}})
		case "GET /repo/objects/ab/cd.commit":
			w.Write([]byte("commit-bytes"))
		case "GET /metadata/targets.json":
			w.Write([]byte("{}"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, tok)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	up, err := c.NewUpload(ctx)
	if err != nil || up.ID != "s1" {
		t.Fatalf("NewUpload = %+v, %v", up, err)
	}
	m, err := c.Missing(ctx, "s1", []string{"abc.filez", "def.dirtree"})
	if err != nil || len(m) != 1 || m[0] != "abc.filez" {
		t.Fatalf("Missing = %v, %v", m, err)
	}
	if err := c.PutObject(ctx, "s1", "abc.filez", strings.NewReader("bytes"), 5); err != nil {
		t.Fatal(err)
	}
	if err := c.CommitUpload(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if rel, err := c.PublishRelease(ctx, api.ReleaseRequest{Channel: "stable", Version: "10.0.2"}); err != nil || rel.Version != "10.0.2" {
		t.Fatalf("PublishRelease = %+v, %v", rel, err)
	}
	_, err = c.PublishRelease(ctx, api.ReleaseRequest{Channel: "edu", Version: "10.0.2", PromotedFrom: "testing"})
	if !errors.Is(err, &api.Error{Code: api.CodePromotion}) || strings.Contains(err.Error(), tok) {
		t.Fatalf("promotion refusal: %v", err)
	}
	if rels, err := c.Releases(ctx, "stable", "x86_64"); err != nil || len(rels) != 1 {
		t.Fatalf("Releases = %v, %v", rels, err)
	}
	if b, err := c.RepoObject(ctx, "objects/ab/cd.commit"); err != nil || string(b) != "commit-bytes" {
		t.Fatalf("RepoObject = %q, %v", b, err)
	}
	if _, err := c.RepoObject(ctx, "objects/zz/none.commit"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing object: %v", err)
	}
	if _, err := c.RepoObject(ctx, "../etc/passwd"); err == nil {
		t.Fatal("path with .. accepted")
	}
	if _, err := c.Missing(ctx, "..", nil); err == nil {
		t.Fatal("session id .. accepted")
	}
	if b, err := c.Metadata(ctx, "targets.json"); err != nil || string(b) != "{}" {
		t.Fatalf("Metadata = %q, %v", b, err)
	}
	// A server without signed channel metadata: nil, no error.
	if b, err := c.Metadata(ctx, "root.json"); err != nil || b != nil {
		t.Fatalf("Metadata of a missing file = %q, %v", b, err)
	}
	if _, err := c.Metadata(ctx, "../repo/config"); err == nil {
		t.Fatal("metadata name with a path accepted")
	}
	if len(seen) != 11 {
		t.Fatalf("server saw %d requests: %v", len(seen), seen)
	}
}
