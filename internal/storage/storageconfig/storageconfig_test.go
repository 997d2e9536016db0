package storageconfig_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/storageconfig"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, in string
		want     storageconfig.Config
		err      string // substring of the error; "" for none
	}{
		{"dir default", "storage: {}\n", storageconfig.Config{Kind: "dir"}, ""},
		{"dir", "storage:\n  kind: dir\n", storageconfig.Config{Kind: "dir"}, ""},
		{"s3", "storage:\n  kind: s3\n  endpoint: http://127.0.0.1:7070\n  bucket: b\n  prefix: mxos/\n  access_key_file: /a\n  secret_key_file: /s\n",
			storageconfig.Config{Kind: "s3", Endpoint: "http://127.0.0.1:7070", Bucket: "b", Prefix: "mxos/", AccessKeyFile: "/a", SecretKeyFile: "/s"}, ""},
		{"redirect", "storage:\n  kind: s3\n  bucket: b\n  access_key_file: /a\n  secret_key_file: /s\n  serve: redirect\n",
			storageconfig.Config{Kind: "s3", Bucket: "b", AccessKeyFile: "/a", SecretKeyFile: "/s", Serve: "redirect"}, ""},
		{"bad serve", "storage:\n  kind: s3\n  bucket: b\n  access_key_file: /a\n  secret_key_file: /s\n  serve: proxy\n", storageconfig.Config{}, `serve "proxy"`},
		{"no section", "other: 1\n", storageconfig.Config{}, "field other not found"},
		{"empty", "", storageconfig.Config{}, "no documents"},
		{"null section", "storage:\n", storageconfig.Config{}, "no storage section"},
		{"unknown key", "storage:\n  kind: s3\n  secret_key: hunter2\n", storageconfig.Config{}, "secret_key not found"},
		{"unknown kind", "storage:\n  kind: gcs\n", storageconfig.Config{}, `kind "gcs"`},
		{"s3 without bucket", "storage:\n  kind: s3\n  access_key_file: /a\n  secret_key_file: /s\n", storageconfig.Config{}, "needs bucket"},
		{"s3 without keys", "storage:\n  kind: s3\n  bucket: b\n", storageconfig.Config{}, "needs access_key_file, secret_key_file"},
		{"bad endpoint", "storage:\n  kind: s3\n  bucket: b\n  endpoint: ftp://x\n  access_key_file: /a\n  secret_key_file: /s\n", storageconfig.Config{}, "http or https"},
		{"hostile prefix", "storage:\n  kind: s3\n  bucket: b\n  prefix: ../x/\n  access_key_file: /a\n  secret_key_file: /s\n", storageconfig.Config{}, "prefix"},
		{"dir with bucket", "storage:\n  kind: dir\n  bucket: b\n", storageconfig.Config{}, "no other settings"},
		{"two documents", "storage: {}\n---\nstorage: {}\n", storageconfig.Config{}, "invalid"},
		{"repeated key", "storage:\n  kind: dir\n  kind: s3\n", storageconfig.Config{}, "already"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := storageconfig.Parse([]byte(c.in))
			if c.err == "" {
				if err != nil || got != c.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
				}
				return
			}
			if err == nil || !errors.Is(err, storageconfig.ErrInvalid) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want ErrInvalid containing %q", err, c.err)
			}
		})
	}
}

// TestShippedExample: the example in deploy/ is valid as shipped.
func TestShippedExample(t *testing.T) {
	c, err := storageconfig.Load("../../../deploy/storage/s3.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != storageconfig.KindS3 || c.Bucket == "" || c.Serve != storageconfig.ServeStream {
		t.Fatalf("example parsed as %+v", c)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("storage:\n  kind: s3\n  bucket: b\n  access_key_file: /a\n  secret_key_file: /s\n"))
	f.Add([]byte("storage: {kind: dir}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := storageconfig.Parse(data)
		if err != nil {
			if !errors.Is(err, storageconfig.ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
	})
}

// TestOpenS3 opens the bucket a storage file names on a real S3 server,
// with the credentials in files, and checks that a wrong secret fails
// without the secret in the error.
func TestOpenS3(t *testing.T) {
	srv := storagetest.StartS3(t)
	bucket := srv.Bucket(t)
	cfgFile, secretFile := srv.StorageFile(t, bucket.Bucket)
	c, err := storageconfig.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), "hello", strings.NewReader("hi"), 2, object.Condition{IfNoneMatch: true}); err != nil {
		t.Fatal(err)
	}

	wrong := "wrong-secret-" + srv.SecretKey[:8]
	if err := os.WriteFile(secretFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = c.Open(context.Background())
	if err == nil {
		t.Fatal("a wrong secret key opened the bucket")
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), srv.SecretKey) {
		t.Fatalf("the error shows the secret: %v", err)
	}
	t.Logf("wrong secret: %v", err)

	// A missing key file is named, and so is the setting.
	c.AccessKeyFile = filepath.Join(t.TempDir(), "missing")
	if _, err := c.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "access_key_file") {
		t.Fatalf("missing key file: %v", err)
	}
	if st, err := (storageconfig.Config{Kind: "dir"}).Open(context.Background()); st != nil || err != nil {
		t.Fatalf("kind dir opened %v, %v", st, err)
	}
}
