package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/storage/storageconfig"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// TestBackupReadsStorageFileAsServer: deploy/backup/bucket.sh, which
// backup.sh and restore.sh use to reach the bucket, reads the shipped
// storage files and the README's format (quotes, comments, a prefix) as
// the server does (storageconfig.Parse): the same bucket, prefix,
// endpoint, region and keys, or kind dir and no bucket. A file it cannot
// read that way (flow style) is refused, never taken for kind dir.
func TestBackupReadsStorageFileAsServer(t *testing.T) {
	testtool.Require(t, "rclone")
	root := testtool.ModuleRoot(t)
	dir := t.TempDir()
	ak, sk := filepath.Join(dir, "ak"), filepath.Join(dir, "sk")
	for f, v := range map[string]string{ak: "AKIDEXAMPLE\n", sk: "secret-example\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	shipped := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, old := range []string{"/run/secrets/s3-access-key", "/etc/mxos/s3/access-key"} {
			s = strings.ReplaceAll(s, old, ak)
		}
		for _, old := range []string{"/run/secrets/s3-secret-key", "/etc/mxos/s3/secret-key"} {
			s = strings.ReplaceAll(s, old, sk)
		}
		return s
	}
	for _, tc := range []struct {
		name, file string
		refused    bool
	}{
		{"deploy/compose/storage.yaml", shipped("deploy/compose/storage.yaml"), false},
		{"deploy/storage/s3.yaml", shipped("deploy/storage/s3.yaml"), false},
		{"quotes, comments, prefix", "# bucket: not-this-one\nstorage:\n  kind: \"s3\"   # S3\n  endpoint: 'http://127.0.0.1:7070'\n" +
			"  bucket: mxos-b # here\n  prefix: \"updates/\"\n  access_key_file: " + ak + "\n  secret_key_file: " + sk + "\n", false},
		{"no region, no endpoint", "storage:\n  kind: s3\n  bucket: aws-b\n  access_key_file: " + ak + "\n  secret_key_file: " + sk + "\n", false},
		{"kind dir", "storage:\n  kind: dir\n", false},
		{"no kind", "storage: {}\n", false},
		{"flow style", "storage: {kind: s3, bucket: b, endpoint: 'http://127.0.0.1:7070', access_key_file: " + ak + ", secret_key_file: " + sk + "}\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := storageconfig.Parse([]byte(tc.file))
			if err != nil {
				t.Fatalf("the server refuses the file: %v", err)
			}
			f := filepath.Join(t.TempDir(), "storage.yaml")
			if err := os.WriteFile(f, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "-c", `. "$1"; bucket_remote "$2" || exit 3; printf '%s\n' "$BUCKET" "${RCLONE_CONFIG_MXOS_ENDPOINT:-}" `+
				`"${RCLONE_CONFIG_MXOS_REGION:-}" "${RCLONE_CONFIG_MXOS_ACCESS_KEY_ID:-}" "${RCLONE_CONFIG_MXOS_SECRET_ACCESS_KEY:-}"`,
				"bash", filepath.Join(root, "deploy", "backup", "bucket.sh"), f)
			cmd.Env = os.Environ()
			out, err := cmd.Output()
			if tc.refused {
				if err == nil {
					t.Fatalf("bucket.sh read a file it should refuse: %q", out)
				}
				return
			}
			if err != nil {
				t.Fatalf("bucket.sh: %v", err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			var exp []string
			if want.Kind == storageconfig.KindDir {
				exp = []string{"", "", "", "", ""}
			} else {
				region := want.Region
				if region == "" {
					region = "us-east-1"
				}
				exp = []string{"mxos:" + want.Bucket + "/" + strings.TrimSuffix(want.Prefix, "/"), want.Endpoint, region, "AKIDEXAMPLE", "secret-example"}
			}
			if strings.Join(got, "|") != strings.Join(exp, "|") {
				t.Fatalf("bucket.sh read %q, the server %q", got, exp)
			}
		})
	}
}
