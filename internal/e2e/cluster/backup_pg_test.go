package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
	"github.com/mxos-linux/mxos-update/internal/testtool/pgtest"
)

// TestBackupRestorePostgresS3 follows deploy/backup/README.md for a
// server on PostgreSQL (--database) with its repository and registry
// blobs in an S3 bucket (--storage, versitygw): keys and signed channel
// metadata as the README sets them up, a release published with mxosctl
// and installed by mxos-updater; backup.sh while the server runs
// (pg_dump, DATA, the bucket with rclone, the keys); restore.sh into an
// empty database, an empty bucket and an empty directory. A new server
// on them serves the same summary, summary.sig and ref byte for byte, the
// bucket holds the same objects, and the device checks in with its old
// token. A damaged backup, a database that is not empty and a bucket that
// is not empty are refused with nothing written.
func TestBackupRestorePostgresS3(t *testing.T) {
	testtool.Require(t, "pg_dump")
	testtool.Require(t, "pg_restore")
	testtool.Require(t, "psql")
	testtool.Require(t, "rclone")
	dir := t.TempDir()
	root := filepath.Join(testtool.ModuleRoot(t), "deploy", "backup")
	w := e2ekit.WorkDir{T: t, Dir: dir}
	run, write := w.Run, w.Write
	copyFile := func(from, to string) { t.Helper(); write(to, w.Read(from)) }
	s3 := storagetest.StartS3(t)
	oldBucket, newBucket := s3.Bucket(t), s3.Bucket(t)
	oldStorage, _ := s3.StorageFile(t, oldBucket.Bucket)
	newStorage, _ := s3.StorageFile(t, newBucket.Bucket)
	oldDB, newDB := pgtest.Database(t), pgtest.Database(t)

	run(nil, e2ekit.Mxosctl(), "keys", "generate", "--dir", "keys")
	run(nil, e2ekit.Mxosctl(), "keys", "generate", "--dir", "online-keys")
	copyFile("keys/ed25519.pub", "device/keys/ed25519.pub")
	copyFile("keys/openpgp.pub.asc", "device/keys/openpgp.pub.asc")
	run(nil, e2ekit.Mxosctl(), "metadata", "init", "--keys", "keys", "--online-pub", "online-keys", "--out", "mxos-data/metadata")
	copyFile("mxos-data/metadata/root.json", "device/keys/root.json")
	serverArgs := func(db, storage, onlineKeys string) []string {
		return []string{"--database", db, "--storage", storage, "--release-keys", filepath.Join(dir, "device/keys"),
			"--online-keys", onlineKeys, "--channels", testserver.ChannelsDir()}
	}
	repoA, stopA := e2ekit.StartServerProcess(t, filepath.Join(dir, "mxos-data"), serverArgs(oldDB, oldStorage, filepath.Join(dir, "online-keys"))...)
	serverA := strings.TrimSuffix(repoA, "/repo")
	token := func(db, role, name string) string {
		out := run(nil, e2ekit.MxosServer(), "token", "create", "--data", "mxos-data", "--database", db, "--role", role, "--name", name)
		return e2ekit.FirstLine(out)
	}
	write("device/token", token(oldDB, "device", "aulas")+"\n")
	deviceConfig := func(server string) {
		write("device/config.yaml", strings.Join([]string{"server: " + server, "token_file: device/token", "device_id: lab3-pc07",
			"channel: testing", "arch: x86_64", "trusted_keys: device/keys", "trusted_root: device/keys/root.json",
			"sysroot: device/sysroot"}, "\n")+"\n")
	}
	deviceConfig(serverA)
	env := []string{"MXOS_SERVER=" + serverA, "MXOS_TOKEN=" + token(oldDB, "release", "equipo")}
	write("rootfs/usr/bin/hola", "#!/bin/sh\necho hola\n")
	run(env, e2ekit.Mxosctl(), "publish", "--channel", "testing", "--version", "10.0.1", "--keys", "keys", "./rootfs")
	if out := run(nil, e2ekit.MxosUpdater(t), "--config", "device/config.yaml", "upgrade"); !strings.Contains(out, "Version 10.0.1 is installed") {
		t.Fatalf("upgrade:\n%s", out)
	}
	served := func(server string) map[string][]byte {
		m := map[string][]byte{}
		for _, p := range []string{"/repo/summary", "/repo/summary.sig", "/repo/refs/heads/mxos/10/x86_64/testing"} {
			m[p] = e2ekit.HTTPGet(t, server+p)
		}
		return m
	}
	e2ekit.WaitLogSettled(t, serverA)
	before := served(serverA)

	backup := filepath.Join(dir, "backup")
	run([]string{"MXOS_DATABASE=" + oldDB, "MXOS_STORAGE=" + oldStorage, "MXOS_ONLINE_KEYS=" + filepath.Join(dir, "online-keys")},
		filepath.Join(root, "backup.sh"), "mxos-data", backup)
	for _, f := range []string{"database.pgdump", "bucket.tar", "data.tar", "secrets.tar"} {
		if _, err := os.Stat(filepath.Join(backup, f)); err != nil {
			t.Fatalf("the backup has no %s: %v", f, err)
		}
	}
	stopA() // the old machine is gone; its database and bucket stay, to be refused as targets

	damaged := filepath.Join(dir, "damaged")
	run(nil, "cp", "-a", backup, damaged)
	e2ekit.FlipByte(t, filepath.Join(damaged, "bucket.tar"), 4096)
	newData := filepath.Join(dir, "new", "mxos-data")
	for _, tc := range []struct{ what, backup, db, storage, want string }{
		{"a damaged backup", damaged, newDB, newStorage, "checksums do not match"},
		{"a database in use", backup, oldDB, newStorage, "database is not empty"},
		{"a bucket in use", backup, newDB, oldStorage, "is not empty; restore into an empty bucket"},
	} {
		cmd := exec.Command(filepath.Join(root, "restore.sh"), tc.backup, newData)
		cmd.Env = append(os.Environ(), "MXOS_DATABASE="+tc.db, "MXOS_STORAGE="+tc.storage)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Fatalf("restore of %s: %v\n%s", tc.what, err, out)
		}
		if _, err := os.Stat(filepath.Dir(newData)); !os.IsNotExist(err) {
			t.Fatalf("the refused restore of %s wrote %s: %v", tc.what, filepath.Dir(newData), err)
		}
		if n := pgTables(t, newDB); n != "0" {
			t.Fatalf("the refused restore of %s wrote %s tables into the empty database", tc.what, n)
		}
		if keys := bucketObjects(t, newBucket); len(keys) != 0 {
			t.Fatalf("the refused restore of %s wrote %d objects into the empty bucket", tc.what, len(keys))
		}
	}

	run([]string{"MXOS_DATABASE=" + newDB, "MXOS_STORAGE=" + newStorage}, filepath.Join(root, "restore.sh"), backup, newData)
	if got, want := bucketObjects(t, newBucket), bucketObjects(t, oldBucket); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the restored bucket holds %d objects, the old one %d", len(got), len(want))
	}
	repoB := e2ekit.StartServer(t, newData, serverArgs(newDB, newStorage, filepath.Join(dir, "new", "online-keys"))...)
	serverB := strings.TrimSuffix(repoB, "/repo")
	after := served(serverB)
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s differs after the restore:\nbefore %q\nafter  %q", p, b, after[p])
		}
	}
	deviceConfig(serverB)
	check := exec.Command(e2ekit.MxosUpdater(t), "--config", "device/config.yaml", "check")
	check.Dir = dir
	out, err := check.CombinedOutput()
	if code := e2ekit.ExitCode(err); code != 77 {
		t.Fatalf("the device's check against the restored server: exit %d (want 77, no update)\n%s", code, out)
	}
	admin := token(newDB, "admin", "admin")
	if st := run([]string{"MXOS_SERVER=" + serverB, "MXOS_TOKEN=" + admin}, e2ekit.Mxosctl(), "devices", "show", "lab3-pc07"); !strings.Contains(st, "10.0.1") {
		t.Fatalf("the restored server does not know the device on 10.0.1:\n%s", st)
	}
}

// pgTables counts the tables outside PostgreSQL's own schemas (psql, as
// restore.sh asks).
func pgTables(t *testing.T, dsn string) string {
	t.Helper()
	return strings.TrimSpace(e2ekit.MustRunCmd(t, os.Environ(), "psql", "--no-psqlrc", "-tA", "-d", dsn, "-c",
		"SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"))
}

// bucketObjects lists a bucket's objects as "key size", sorted.
func bucketObjects(t *testing.T, cfg s3store.Config) []string {
	t.Helper()
	st, err := s3store.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := st.List(context.Background(), "", func(i object.Info) error {
		keys = append(keys, fmt.Sprintf("%s %d", i.Key, i.Size))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}
