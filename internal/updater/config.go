// Package updater is the device agent: its configuration and the Agent,
// which runs check → download → verify → stage → switch (Upgrade) and,
// after the reboot, health-check → commit | rollback → report (Boot);
// Run is the daemon loop around Upgrade (run.go). Downloads are an OSTree
// pull or, with `transport: oci`, the release's signed image (ocifetch.go);
// deployments go through a Backend (backend.go: the pure-Go sysroot or
// stock ostree admin).
//
// The server only proposes: verify.go lists what the device checks itself
// (arch, channel and ref of the offer; the signed channel metadata of
// trusted_root, required unless insecure_no_metadata; no older version and
// no other build of the installed one; the pulled commit's release
// signature, ref binding and version) and which key checks what: release
// keys (trusted_keys) the commits, the online keys root.json names the
// summary. Every step of Upgrade is resumable after a kill
// or a power loss (see install), and a good boot removes deployments that
// are neither current, previous nor staged (sysroot.GC).
//
// Offline: UpgradeFrom installs from an update bundle on a USB stick with
// the same checks (bundle.go); without the server the agent decides from
// the signed channel metadata (offline.go); reports the server cannot take
// wait in a durable queue and are sent once it answers (reportqueue.go).
//
// The configuration is one strictly decoded YAML file (unknown keys are an
// error, so a typo fails at install time rather than at 3 a.m.).
package updater

import (
	"github.com/mxos-linux/mxos-update/internal/i18n"

	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	_ "time/tzdata" // devices may lack /usr/share/zoneinfo; windows need time zones

	"go.yaml.in/yaml/v4"
)

// The download transports of Config.Transport.
const (
	TransportOSTree = "ostree"
	TransportOCI    = "oci"
)

// Config is /etc/mxos-updater/config.yaml.
type Config struct {
	// Server is the update API, e.g. https://updates.example.mx.
	Server string `yaml:"server"`
	// Mirrors are repository URLs ending in /repo, tried in order; empty
	// means Server + "/repo". A school's LAN mirror goes first.
	Mirrors []string `yaml:"mirrors"`
	// TokenFile holds the device token (role device); kept out of the
	// config so the config can be world-readable.
	TokenFile string `yaml:"token_file"`
	// Device identity (credential.go): CredentialFile keeps the device's
	// own credential, 0600 (default /var/lib/mxos-updater/credential);
	// EnrollTokenFile holds the school image's enroll token, traded once
	// for that credential. Either replaces TokenFile.
	CredentialFile  string `yaml:"credential_file"`
	EnrollTokenFile string `yaml:"enroll_token_file"`

	DeviceID string `yaml:"device_id"`
	Channel  string `yaml:"channel"`
	// AllowedChannels are other channels an admin may move this machine
	// to (a pin); offers of any other channel are refused.
	AllowedChannels []string `yaml:"allowed_channels"`
	Arch            string   `yaml:"arch"`
	Group           string   `yaml:"group"`
	// Sysroot is the root of the deployments; Backend is "sysroot" (pure
	// Go) or "ostree" (drives `ostree admin`).
	Sysroot string `yaml:"sysroot"`
	Backend string `yaml:"backend"`
	// Transport is how a release is downloaded: "ostree" (the default;
	// a verified pull from the mirrors) or "oci" (the release's signed
	// bootable image from the server's registry, checked against the
	// offered commit; see ocifetch.go). ImageHost is the registry host the
	// image signatures name when it is not the server's own host.
	Transport string `yaml:"transport"`
	ImageHost string `yaml:"image_host"`
	// Keys, each for its own role (verify.go). TrustedKeys is the
	// directory of the public release keys (ed25519.pub, openpgp.pub.asc):
	// only their signatures make a commit installable. TrustedRoot is the
	// shipped TUF root (root.json) of the signed channel metadata: every
	// offer must be the release it lists, and its online keys check the
	// repository summary. Required unless InsecureNoMetadata, which turns
	// the metadata off (a warning on every check) and then needs
	// OnlineKeys, the directory of the server's public online keys.
	TrustedKeys        string `yaml:"trusted_keys"`
	TrustedRoot        string `yaml:"trusted_root"`
	InsecureNoMetadata bool   `yaml:"insecure_no_metadata"`
	OnlineKeys         string `yaml:"online_keys"`
	// HealthDir holds required.d/ and wanted.d/ checks.
	HealthDir string   `yaml:"health_dir"`
	Interval  Duration `yaml:"interval"`
	Jitter    Duration `yaml:"jitter"`
	Strategy  Strategy `yaml:"strategy"`

	// CAFile (TLS, tls.go) is a PEM file of the CA that signed the TLS
	// certificates of the server, the mirrors and the registry, added to
	// the system's roots for every request the agent makes.
	CAFile string `yaml:"ca_file"`

	// LogKey (tlog.go), when set, is the public transparency log's key
	// (name+hash+base64, or a file holding it): every offered release must
	// then be proven in the log before it is downloaded.
	LogKey string `yaml:"log_key"`
	// LogWitnesses (tlog.go): witness verifier keys (or files holding
	// one); with log_key, the log's checkpoint must carry cosignatures of
	// at least LogWitnessThreshold of them (0: all).
	LogWitnesses        []string `yaml:"log_witnesses"`
	LogWitnessThreshold int      `yaml:"log_witness_threshold"`
}

// Strategy says when a staged update may switch and reboot.
type Strategy struct {
	// Kind is "immediate", "window" or "fleet-lock".
	Kind string `yaml:"kind"`
	// Window: daily start and end ("22:00", "05:00"; may cross midnight)
	// in TimeZone (e.g. America/Mexico_City).
	Start    string `yaml:"start"`
	End      string `yaml:"end"`
	TimeZone string `yaml:"time_zone"`
	// FleetLock: at most MaxRebooting devices of the group at once.
	MaxRebooting int `yaml:"max_rebooting"`
}

// Duration is a time.Duration written as "1h", "30m".
type Duration time.Duration

// UnmarshalText parses a duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// ErrInvalid marks a configuration problem.
var ErrInvalid = i18n.Errorf("invalid updater configuration")

// LoadConfig reads, strictly decodes, defaults and validates a config.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, i18n.Errorf("reading %s: %w", path, err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a config from YAML.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	if c.Backend == "" {
		c.Backend = "sysroot"
	}
	if c.Transport == "" {
		c.Transport = TransportOSTree
	}
	if c.Interval == 0 {
		c.Interval = Duration(time.Hour)
	}
	if c.Jitter == 0 {
		c.Jitter = Duration(10 * time.Minute)
	}
	if c.Strategy.Kind == "" {
		c.Strategy.Kind = "immediate"
	}
	if c.Sysroot == "" {
		c.Sysroot = "/"
	}
	if c.CredentialFile == "" {
		c.CredentialFile = DefaultCredentialFile
	}
	if c.HealthDir == "" {
		c.HealthDir = "/etc/mxos-updater/health"
	}
	if len(c.Mirrors) == 0 && c.Server != "" {
		c.Mirrors = []string{strings.TrimRight(c.Server, "/") + "/repo"}
	}
}

// Validate reports every problem at once, one per line.
func (c *Config) Validate() error {
	var probs []any // errors: catalog messages (internal/i18n)
	bad := func(format string, args ...any) { probs = append(probs, i18n.Errorf(format, args...)) }
	checkURL := func(what, s string) {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			bad("%s %q must be an http(s) URL without credentials", what, s)
		}
	}
	if c.Server == "" {
		bad("server is required")
	} else {
		checkURL("server", c.Server)
	}
	for _, m := range c.Mirrors {
		checkURL("mirror", m)
	}
	if c.DeviceID == "" || len(c.DeviceID) > 128 {
		bad("device_id must be 1 to 128 characters")
	}
	if c.Channel == "" {
		bad("channel is required")
	}
	for _, ch := range c.AllowedChannels {
		if ch == "" || strings.ContainsAny(ch, "/ ") {
			bad("allowed_channels: %q is not a channel name", ch)
		}
	}
	if c.Arch == "" {
		bad("arch is required (x86_64, aarch64)")
	}
	if c.TrustedKeys == "" {
		bad("trusted_keys is required: nothing unsigned is ever installed")
	}
	c.validateTrust(bad)
	if c.Backend != "sysroot" && c.Backend != "ostree" {
		bad("backend %q: use sysroot or ostree", c.Backend)
	}
	if c.Transport != TransportOSTree && c.Transport != TransportOCI {
		bad("transport %q: use ostree or oci", c.Transport)
	}
	if c.Interval < Duration(time.Minute) {
		bad("interval must be at least 1m")
	}
	if c.Jitter < 0 || c.Jitter > c.Interval {
		bad("jitter must be between 0 and the interval")
	}
	switch c.Strategy.Kind {
	case "immediate":
	case "window":
		for _, t := range []string{c.Strategy.Start, c.Strategy.End} {
			if _, err := time.Parse("15:04", t); err != nil {
				bad("strategy window times must look like 22:00, got %q", t)
			}
		}
		if c.Strategy.Start == c.Strategy.End {
			bad("strategy window start and end must differ")
		}
		if c.Strategy.TimeZone == "" {
			bad("strategy window needs time_zone, e.g. America/Mexico_City")
		} else if _, err := time.LoadLocation(c.Strategy.TimeZone); err != nil {
			bad("strategy time_zone %q: %v", c.Strategy.TimeZone, err)
		}
	case "fleet-lock":
		if c.Strategy.MaxRebooting < 1 {
			bad("strategy fleet-lock needs max_rebooting of at least 1")
		}
		if c.Group == "" {
			bad("strategy fleet-lock needs the device's group")
		}
	default:
		bad("strategy kind %q: use immediate, window or fleet-lock", c.Strategy.Kind)
	}
	if len(probs) > 0 {
		// One problem a line; each is translated where the error is shown.
		return i18n.Errorf("%w:\n  %w", ErrInvalid, i18n.Errorf(strings.Repeat("%w\n  ", len(probs)-1)+"%w", probs...))
	}
	return nil
}

// InWindow reports whether t falls in the maintenance window (always true
// for other strategies). Windows may cross midnight.
func (s Strategy) InWindow(t time.Time) bool {
	if s.Kind != "window" {
		return true
	}
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return false
	}
	start, err1 := time.Parse("15:04", s.Start)
	end, err2 := time.Parse("15:04", s.End)
	if err1 != nil || err2 != nil {
		return false
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	sm, em := start.Hour()*60+start.Minute(), end.Hour()*60+end.Minute()
	if sm < em {
		return m >= sm && m < em
	}
	return m >= sm || m < em
}

// validateTrust checks the trust settings: signed channel metadata
// (trusted_root) or, explicitly, none (insecure_no_metadata with
// online_keys).
func (c *Config) validateTrust(bad func(string, ...any)) {
	switch {
	case !c.InsecureNoMetadata && c.TrustedRoot == "":
		bad("trusted_root is required (the shipped root.json of the signed channel metadata); " +
			"only to run without metadata set insecure_no_metadata: true and online_keys")
	case !c.InsecureNoMetadata && c.OnlineKeys != "":
		bad("online_keys is used only with insecure_no_metadata: with trusted_root the online keys come from root.json")
	case c.InsecureNoMetadata && c.TrustedRoot != "":
		bad("insecure_no_metadata and trusted_root exclude each other: remove insecure_no_metadata to check the signed channel metadata")
	case c.InsecureNoMetadata && c.OnlineKeys == "":
		bad("insecure_no_metadata needs online_keys: the directory of the server's public online keys, which sign the summary")
	case c.InsecureNoMetadata && filepath.Clean(c.OnlineKeys) == filepath.Clean(c.TrustedKeys):
		bad("online_keys and trusted_keys must be different directories: only release keys make a commit installable")
	}
	if len(c.LogWitnesses) > 0 && c.LogKey == "" {
		bad("log_witnesses needs log_key: the witnesses vouch for the transparency log's checkpoints")
	}
	if c.LogWitnessThreshold < 0 || c.LogWitnessThreshold > len(c.LogWitnesses) {
		bad("log_witness_threshold is %d, but %d witnesses are listed", c.LogWitnessThreshold, len(c.LogWitnesses))
	}
}
