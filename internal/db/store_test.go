package db

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tests that need no particular engine.

func TestOpenSQLiteDefaults(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data dir") // created by Open; a space needs escaping
	s, err := Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(filepath.Join(dir, "mxos.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mxos.db mode %v, want 0600", fi.Mode().Perm())
	}
	if s.Engine() != "sqlite" {
		t.Errorf("Engine = %q", s.Engine())
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// Several connections at once, so the settings are checked on more
	// than the pool's first connection.
	conns := make([]interface{ Close() error }, 3)
	for i := range conns {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "10000"} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("connection %d: PRAGMA %s = %s, want %s", i, pragma, got, want)
			}
		}
	}
	for _, c := range conns {
		c.Close()
	}
}

func TestOpenRefusesBadDSN(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ dsn, dataDir string }{
		{"", ""},
		{"mysql://root:hunter2@db/mxos", ""},
		{"sqlite:", ""},
		{"sqlite:/tmp/x.db?mode=ro", ""},
	} {
		_, err := Open(ctx, c.dsn, c.dataDir)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%q, %q) = %v, want ErrInvalid", c.dsn, c.dataDir, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the DSN's password: %v", err)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].name != "0001_init.sql" {
		t.Fatalf("migrations = %v", ms)
	}
	for _, m := range ms {
		if dialectPostgres.rewrite(m.sql) != m.sql {
			t.Errorf("%s: PostgreSQL runs migrations as written", m.name)
		}
		if strings.Contains(dialectSQLite.rewrite(m.sql), "BIGSERIAL") {
			t.Errorf("%s: SQLite SQL still says BIGSERIAL", m.name)
		}
	}
}

// TestAuditHashEncoding pins the chain encoding documented at auditHash:
// the message is rebuilt here byte by byte, and the digest of a fixed
// entry is a golden value, so an accidental change to the encoding (which
// would break every existing chain) fails loudly.
func TestAuditHashEncoding(t *testing.T) {
	prev := bytes.Repeat([]byte{0xab}, 32)
	e := Entry{
		Seq: 7, Actor: "token:ci", Action: "publish", Subject: "testing/x86_64 10.1",
		Detail: `{"commit":"00ff"}`,
		At:     time.Date(2026, 11, 23, 7, 45, 9, 123456789, time.FixedZone("CST", -6*3600)),
	}
	var msg []byte
	msg = append(msg, prev...)
	msg = binary.BigEndian.AppendUint64(msg, 7)
	for _, f := range []string{"token:ci", "publish", "testing/x86_64 10.1", `{"commit":"00ff"}`, "2026-11-23T13:45:09.123456Z"} {
		msg = binary.BigEndian.AppendUint64(msg, uint64(len(f)))
		msg = append(msg, f...)
	}
	want := sha256.Sum256(msg)
	got := auditHash(prev, &e)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("auditHash = %x, want %x", got, want)
	}
	const golden = "b68f9db5ddaf575909b9cb40e9ce921618023b46db2eeaee2114e4b9949b819c"
	if hex.EncodeToString(got) != golden {
		t.Fatalf("auditHash changed: %x, golden %s", got, golden)
	}

	// Field boundaries matter: moving a byte between fields changes the hash.
	e2 := e
	e2.Actor, e2.Action = "token:cip", "ublish"
	if bytes.Equal(auditHash(prev, &e2), got) {
		t.Fatal("length prefixes do not separate fields")
	}
}
