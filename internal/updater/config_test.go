package updater

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShippedExampleLoads(t *testing.T) {
	c, err := LoadConfig("../../deploy/updater/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Channel != "edu" || c.Strategy.Kind != "window" || time.Duration(c.Interval) != time.Hour || len(c.Mirrors) != 2 ||
		c.TrustedRoot == "" || c.InsecureNoMetadata || c.OnlineKeys != "" {
		t.Fatalf("config = %+v", c)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte("server: https://u.example\ndevice_id: d\nchannel: stable\narch: x86_64\ntrusted_keys: /k\ntrusted_root: /k/root.json\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != "sysroot" || c.Strategy.Kind != "immediate" || len(c.Mirrors) != 1 || c.Mirrors[0] != "https://u.example/repo" {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestConfigInsecureNoMetadata(t *testing.T) {
	c, err := ParseConfig([]byte("server: https://u.example\ndevice_id: d\nchannel: stable\narch: x86_64\ntrusted_keys: /k\n" +
		"insecure_no_metadata: true\nonline_keys: /o\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.InsecureNoMetadata || c.OnlineKeys != "/o" || c.TrustedRoot != "" {
		t.Fatalf("config = %+v", c)
	}
}

func TestConfigRefusals(t *testing.T) {
	base := "server: https://u.example\ndevice_id: d\nchannel: stable\narch: x86_64\ntrusted_keys: /k\ntrusted_root: /k/root.json\n"
	cases := []struct{ name, yaml, want string }{
		{"unknown-key", base + "chanel: x\n", "chanel"},
		{"no-server", "device_id: d\nchannel: s\narch: x\ntrusted_keys: /k\ntrusted_root: /k/root.json\n", "server is required"},
		{"credentials", strings.Replace(base, "https://u.example", "https://me:pw@u.example", 1), "without credentials"},
		{"no-keys", strings.Replace(base, "trusted_keys: /k\ntrusted_root: /k/root.json\n", "", 1), "trusted_keys is required"},
		{"bad-backend", base + "backend: rpm\n", "backend"},
		{"short-interval", base + "interval: 10s\n", "interval"},
		{"bad-duration", base + "interval: soon\n", "duration"},
		{"window-no-tz", base + "strategy: {kind: window, start: \"22:00\", end: \"05:00\"}\n", "time_zone"},
		{"window-bad-time", base + "strategy: {kind: window, start: \"25:00\", end: \"05:00\", time_zone: UTC}\n", "22:00"},
		{"fleet-lock-no-group", base + "strategy: {kind: fleet-lock, max_rebooting: 2}\n", "group"},
		{"bad-kind", base + "strategy: {kind: yolo}\n", "yolo"},
		// Key roles: signed channel metadata is the default; running
		// without it is spelled out, with the online keys for the summary.
		{"no-root", strings.Replace(base, "trusted_root: /k/root.json\n", "", 1), "trusted_root is required"},
		{"online-keys-with-root", base + "online_keys: /o\n", "online_keys is used only with insecure_no_metadata"},
		{"insecure-and-root", base + "insecure_no_metadata: true\nonline_keys: /o\n", "exclude each other"},
		{"insecure-no-online-keys", strings.Replace(base, "trusted_root: /k/root.json\n", "insecure_no_metadata: true\n", 1), "needs online_keys"},
		{"insecure-online-is-release", strings.Replace(base, "trusted_root: /k/root.json\n", "insecure_no_metadata: true\nonline_keys: /k/\n", 1), "different directories"},
		{"witnesses-no-log-key", base + "log_witnesses: [w.example+01234567+AQ==]\n", "log_witnesses needs log_key"},
		{"witness-threshold-too-high", base + "log_key: l\nlog_witnesses: [w]\nlog_witness_threshold: 2\n", "log_witness_threshold is 2, but 1 witnesses"},
		{"insecure-not-bool", strings.Replace(base, "trusted_root: /k/root.json\n", "insecure_no_metadata: yes please\nonline_keys: /o\n", 1), "into bool"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.yaml))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestInWindow(t *testing.T) {
	s := Strategy{Kind: "window", Start: "22:00", End: "05:00", TimeZone: "America/Mexico_City"}
	loc, _ := time.LoadLocation("America/Mexico_City")
	cases := []struct {
		h, m int
		in   bool
	}{{21, 59, false}, {22, 0, true}, {23, 30, true}, {0, 0, true}, {4, 59, true}, {5, 0, false}, {12, 0, false}}
	for _, c := range cases {
		at := time.Date(2026, 11, 23, c.h, c.m, 0, 0, loc)
		if got := s.InWindow(at.UTC()); got != c.in {
			t.Errorf("%02d:%02d in window = %v", c.h, c.m, got)
		}
	}
	day := Strategy{Kind: "window", Start: "09:00", End: "17:00", TimeZone: "UTC"}
	if !day.InWindow(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)) || day.InWindow(time.Date(2026, 1, 1, 18, 0, 0, 0, time.UTC)) {
		t.Error("daytime window wrong")
	}
	if !(Strategy{Kind: "immediate"}).InWindow(time.Now()) {
		t.Error("immediate is always in window")
	}
}

func TestTransportsCAFile(t *testing.T) {
	base := "server: https://u.example\ndevice_id: d\nchannel: testing\narch: x86_64\ntrusted_keys: /k\ntrusted_root: /k/root.json\n"
	c, err := ParseConfig([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if tr, err := c.Transports(); err != nil || tr.Repo != nil || tr.Meta != nil || tr.API == nil {
		t.Fatalf("without ca_file: %+v %v", tr, err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{bad, filepath.Join(t.TempDir(), "missing.pem")} {
		c, err := ParseConfig([]byte(base + "ca_file: " + f + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Transports(); err == nil || !strings.Contains(err.Error(), "ca_file") {
			t.Errorf("ca_file %s: %v", f, err)
		}
	}
}
