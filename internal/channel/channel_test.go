package channel

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/rollout"
)

const shippedDir = "../../channels"

// Every shipped definition loads strictly and the set validates.
func TestShippedChannels(t *testing.T) {
	set, err := LoadDir(shippedDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Names(); !slices.Equal(got, []string{"edu", "stable", "testing"}) {
		t.Fatalf("shipped channels = %v", got)
	}
	entries, err := os.ReadDir(shippedDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), Ext) {
			t.Errorf("%s: not a channel definition; only *%s files belong in channels/", e.Name(), Ext)
		}
	}
	for _, c := range set.Channels() {
		if !slices.Equal(c.Arches(), []string{"aarch64", "x86_64"}) {
			t.Errorf("%s: arches %v", c.Name, c.Arches())
		}
		for _, arch := range c.Arches() {
			if ref, _ := c.Ref(arch); ref != "mxos/10/"+arch+"/"+c.Name {
				t.Errorf("%s: ref for %s is %q", c.Name, arch, ref)
			}
		}
		if _, err := c.DefaultRamp(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		if err := c.HaltPolicy().Validate(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		if !c.AllowsPublisher("release", "") {
			t.Errorf("%s: the release team cannot publish", c.Name)
		}
		if c.AllowsPublisher("device", "") {
			t.Errorf("%s: devices can publish", c.Name)
		}
	}
	stable, _ := set.Get("stable")
	edu, _ := set.Get("edu")
	if stable.DeltaSources() != DefaultStaticDeltas || edu.DeltaSources() != 3 {
		t.Errorf("static deltas: stable %d (want the default %d), edu %d (want 3)", stable.DeltaSources(), DefaultStaticDeltas, edu.DeltaSources())
	}
	if stable.Rollout.Ramp != "1%,10%@24h,50%@48h,100%@72h" || stable.Rollout.Window != 24*time.Hour {
		t.Errorf("stable rollout = %+v", stable.Rollout)
	}
	for _, c := range []struct{ from, to string }{{"testing", "stable"}, {"stable", "edu"}} {
		if err := set.CanPromote(c.from, c.to); err != nil {
			t.Errorf("CanPromote(%s, %s) = %v", c.from, c.to, err)
		}
	}
}

func TestCanPromote(t *testing.T) {
	set, err := LoadDir(shippedDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to string
		is       error
		msg      string
	}{
		{"testing", "stable", nil, ""},
		{"stable", "edu", nil, ""},
		{"testing", "edu", ErrPromotion, "edu can only be promoted from stable"},
		{"edu", "stable", ErrPromotion, "stable can only be promoted from testing"},
		{"stable", "testing", ErrPromotion, "testing is not promoted into; releases are published to it directly"},
		{"stable", "stable", ErrPromotion, "cannot promote stable into itself"},
		{"testing", "beta", ErrUnknownChannel, `promote to "beta": unknown channel "beta" (have edu, stable, testing)`},
		{"nightly", "stable", ErrUnknownChannel, `promote from "nightly": unknown channel`},
	} {
		err := set.CanPromote(c.from, c.to)
		switch {
		case c.is == nil && err != nil:
			t.Errorf("CanPromote(%s, %s) = %v", c.from, c.to, err)
		case c.is != nil && (!errors.Is(err, c.is) || !strings.Contains(err.Error(), c.msg)):
			t.Errorf("CanPromote(%s, %s) = %v; want %v containing %q", c.from, c.to, err, c.is, c.msg)
		}
	}
}

// valid returns a channel that passes Validate; tests break one thing.
func valid() *Channel {
	return &Channel{
		Name: "stable",
		Refs: map[string]string{
			"x86_64":  "mxos/10/x86_64/stable",
			"aarch64": "mxos/10/aarch64/stable",
		},
		Publishers:   []string{"release", "token:ci-build"},
		PromotesFrom: "testing",
		Rollout:      Rollout{Ramp: "1%,10%@24h,100%@72h", HaltThreshold: 0.05, MinSamples: 50, Window: 24 * time.Hour},
		Barriers:     []Barrier{{Version: "10.2", Reason: "new signing key"}},
		DeadEnds:     []DeadEnd{{Version: "10.1.3", Successor: "10.1.4", Reason: "broken updater"}},
	}
}

func TestValidate(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid channel: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*Channel)
		msg  string
	}{
		{"empty name", func(c *Channel) { c.Name = "" }, `name "" must be lower-case letters`},
		{"upper-case name", func(c *Channel) { c.Name = "Stable" }, `name "Stable" must be`},
		{"name with slash", func(c *Channel) { c.Name = "a/b" }, `name "a/b" must be`},
		{"no refs", func(c *Channel) { c.Refs = nil }, "refs: at least one architecture is required"},
		{"unknown arch", func(c *Channel) { c.Refs["amd64"] = "mxos/10/amd64/stable" }, `refs: unknown architecture "amd64"`},
		{"empty ref", func(c *Channel) { c.Refs["x86_64"] = "" }, "refs.x86_64: empty OSTree ref"},
		{"ref with empty fragment", func(c *Channel) { c.Refs["x86_64"] = "mxos//x86_64/stable" }, `refs.x86_64: "mxos//x86_64/stable" is not a valid OSTree ref`},
		{"ref with leading slash", func(c *Channel) { c.Refs["x86_64"] = "/mxos/10/x86_64/stable" }, "is not a valid OSTree ref"},
		{"ref fragment starting with dot", func(c *Channel) { c.Refs["x86_64"] = "mxos/10/.x86_64/stable" }, "is not a valid OSTree ref"},
		{"ref with space", func(c *Channel) { c.Refs["x86_64"] = "mxos/10/x86_64/sta ble" }, "is not a valid OSTree ref"},
		{"ref with colon", func(c *Channel) { c.Refs["x86_64"] = "remote:mxos/10/x86_64/stable" }, "is not a valid OSTree ref"},
		{"ref too long", func(c *Channel) { c.Refs["x86_64"] = strings.Repeat("a/", 200) + "x86_64/stable" }, "at most 255 allowed"},
		{"ref of another arch", func(c *Channel) { c.Refs["aarch64"] = "mxos/10/x86_64/stable" }, `refs.aarch64: "mxos/10/x86_64/stable" must end in "/aarch64/stable"`},
		{"ref of another channel", func(c *Channel) { c.Refs["x86_64"] = "mxos/10/x86_64/testing" }, `must end in "/x86_64/stable"`},
		{"no publishers", func(c *Channel) { c.Publishers = nil }, "publishers: at least one is required"},
		{"device publisher", func(c *Channel) { c.Publishers = []string{"device"} }, `publishers[0]: "device" cannot publish`},
		{"unknown role", func(c *Channel) { c.Publishers = []string{"release", "root"} }, `publishers[1]: "root" is neither a role (admin, release) nor token:<name>`},
		{"bad token name", func(c *Channel) { c.Publishers = []string{"token:CI Build"} }, `publishers[0]: "token:CI Build": token names are`},
		{"empty token name", func(c *Channel) { c.Publishers = []string{"token:"} }, `publishers[0]: "token:"`},
		{"duplicate publisher", func(c *Channel) { c.Publishers = []string{"release", "release"} }, `publishers[1]: "release" is listed twice`},
		{"promoted from itself", func(c *Channel) { c.PromotesFrom = "stable" }, "promotes_from: a channel cannot be promoted from itself"},
		{"bad promotes_from", func(c *Channel) { c.PromotesFrom = "Testing!" }, `promotes_from "Testing!" is not a channel name`},
		{"no ramp", func(c *Channel) { c.Rollout.Ramp = "" }, "rollout.ramp: invalid rollout ramp: empty"},
		{"bad ramp", func(c *Channel) { c.Rollout.Ramp = "1%,50%@24h" }, "rollout.ramp: invalid rollout ramp: last step is 50%"},
		{"zero threshold", func(c *Channel) { c.Rollout.HaltThreshold = 0 }, "rollout.halt_threshold 0 must be a failure rate in (0, 1]"},
		{"threshold as percent", func(c *Channel) { c.Rollout.HaltThreshold = 5 }, "rollout.halt_threshold 5 must be"},
		{"negative threshold", func(c *Channel) { c.Rollout.HaltThreshold = -0.1 }, "rollout.halt_threshold -0.1"},
		{"negative signature threshold", func(c *Channel) { c.Threshold = -1 }, "threshold -1 must be between 1 and 16"},
		{"signature threshold too high", func(c *Channel) { c.Threshold = 17 }, "threshold 17 must be between 1 and 16"},
		{"negative static deltas", func(c *Channel) { n := -1; c.StaticDeltas = &n }, "static_deltas -1 must be between 0 and 16"},
		{"too many static deltas", func(c *Channel) { n := 17; c.StaticDeltas = &n }, "static_deltas 17 must be between 0 and 16"},
		{"zero min samples", func(c *Channel) { c.Rollout.MinSamples = 0 }, "rollout.min_samples 0 must be at least 1"},
		{"no window", func(c *Channel) { c.Rollout.Window = 0 }, "rollout.window 0s must be positive"},
		{"bad barrier version", func(c *Channel) { c.Barriers[0].Version = "v10.2" }, "barriers[0].version: invalid release version"},
		{"barrier without reason", func(c *Channel) { c.Barriers[0].Reason = " " }, "barriers[0].reason is required"},
		{"duplicate barrier", func(c *Channel) { c.Barriers = append(c.Barriers, Barrier{"10.2.0", "again"}) }, "barriers[1].version 10.2.0 is already declared in barriers[0]"},
		{"barrier and dead end", func(c *Channel) { c.DeadEnds[0].Version = "10.2"; c.DeadEnds[0].Successor = "" }, "dead_ends[0].version 10.2 is already declared in barriers[0]"},
		{"bad dead end version", func(c *Channel) { c.DeadEnds[0].Version = "" }, "dead_ends[0].version: invalid release version: empty"},
		{"dead end without reason", func(c *Channel) { c.DeadEnds[0].Reason = "" }, "dead_ends[0].reason is required"},
		{"bad successor", func(c *Channel) { c.DeadEnds[0].Successor = "next" }, "dead_ends[0].successor: invalid release version"},
		{"successor not newer", func(c *Channel) { c.DeadEnds[0].Successor = "10.1.3.0" }, "dead_ends[0].successor 10.1.3.0 must be newer than 10.1.3"},
		{"successor older", func(c *Channel) { c.DeadEnds[0].Successor = "10.0" }, "must be newer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := valid()
			c.edit(ch)
			err := ch.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Validate = %v; want ErrInvalid containing %q", err, c.msg)
			}
		})
	}
}

// Validate reports every problem at once, not just the first.
func TestValidateAllProblems(t *testing.T) {
	c := valid()
	c.Publishers = nil
	c.Rollout.MinSamples = 0
	c.Rollout.Ramp = "oops"
	err := c.Validate()
	for _, want := range []string{"publishers", "rollout.min_samples", "rollout.ramp"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v; want it to mention %s", err, want)
		}
	}
	if !errors.Is(err, rollout.ErrBadRamp) {
		t.Errorf("ramp error does not wrap rollout.ErrBadRamp: %v", err)
	}
}

func TestNewSet(t *testing.T) {
	named := func(name, from string) *Channel {
		c := valid()
		c.Name, c.PromotesFrom = name, from
		c.Refs = map[string]string{"x86_64": "mxos/10/x86_64/" + name, "aarch64": "mxos/10/aarch64/" + name}
		return c
	}
	if _, err := NewSet(named("testing", ""), named("stable", "testing"), named("edu", "stable")); err != nil {
		t.Fatalf("valid set: %v", err)
	}
	for _, c := range []struct {
		name  string
		chans func() []*Channel
		msg   string
	}{
		{"invalid member", func() []*Channel { c := named("testing", ""); c.Publishers = nil; return []*Channel{c} }, "publishers"},
		{"nil member", func() []*Channel { return []*Channel{nil} }, "nil channel"},
		{"defined twice", func() []*Channel { return []*Channel{named("testing", ""), named("testing", "")} }, `"testing": defined twice`},
		{"unknown source", func() []*Channel { return []*Channel{named("testing", ""), named("stable", "beta")} }, `"stable": promotes_from names "beta", which is not a channel (have stable, testing)`},
		{"cycle", func() []*Channel {
			return []*Channel{named("testing", ""), named("stable", "edu"), named("edu", "stable")}
		}, `promotion cycle edu ← stable ← edu`},
		{"three-cycle", func() []*Channel {
			return []*Channel{named("a", "c"), named("b", "a"), named("c", "b")}
		}, `promotion cycle a ← c ← b ← a`},
		{"arch missing in source", func() []*Channel {
			src := named("testing", "")
			delete(src.Refs, "aarch64")
			return []*Channel{src, named("stable", "testing")}
		}, `"stable": has a ref for aarch64 but its source "testing" has none`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewSet(c.chans()...)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("NewSet = %v; want ErrInvalid containing %q", err, c.msg)
			}
		})
	}
}

func TestParseStrict(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(shippedDir, "stable.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(good); err != nil {
		t.Fatalf("Parse(stable.yaml) = %v", err)
	}
	for _, c := range []struct{ name, doc, msg string }{
		{"unknown top-level key", string(good) + "\nchanel: stable\n", "field chanel not found"},
		{"unknown nested key", strings.Replace(string(good), "  window: 24h", "  window: 24h\n  threshold: 0.1", 1), "field threshold not found"},
		{"the old oci section", string(good) + "\noci:\n  repository: mxos/os\n  tag: stable\n", "field oci not found"},
		{"misspelt key", strings.Replace(string(good), "promotes_from:", "promote_from:", 1), "field promote_from not found"},
		{"duplicate key", string(good) + "\nname: edu\n", `mapping key "name" already defined`},
		{"two documents", string(good) + "\n---\nname: edu\n", "expected single document"},
		{"empty", "", "no documents"},
		{"wrong type", strings.Replace(string(good), "min_samples: 50", "min_samples: many", 1), "cannot construct"},
		{"window without unit", strings.Replace(string(good), "window: 24h", "window: 24", 1), "into time.Duration"},
		{"window in days", strings.Replace(string(good), "window: 24h", "window: 1d", 1), "into time.Duration"},
		{"publishers not a list", strings.Replace(string(good), "publishers:\n  - release", "publishers: release", 1), "cannot construct"},
		{"valid YAML, invalid channel", strings.Replace(string(good), "halt_threshold: 0.05", "halt_threshold: 5", 1), "rollout.halt_threshold 5"},
		{"null document", "~\n", "name \"\" must be"},
		{"too large", strings.Repeat("#", maxFileSize+1), "at most"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Parse = %v; want ErrInvalid containing %q", err, c.msg)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(shippedDir, "stable.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := Load(write("stable.yaml", string(good))); err != nil {
		t.Fatalf("Load = %v", err)
	}
	p := write("estable.yaml", string(good))
	if _, err := Load(p); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `name must match the file name "estable"`) {
		t.Errorf("Load(misnamed) = %v", err)
	}
	bad := write("bad.yaml", "name: bad\nbogus: true\n")
	if _, err := Load(bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("Load(unknown key) = %v; want the path and the key", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestLoadDir(t *testing.T) {
	copyShipped := func(t *testing.T) string {
		dir := t.TempDir()
		for _, n := range []string{"testing", "stable", "edu"} {
			b, err := os.ReadFile(filepath.Join(shippedDir, n+Ext))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, n+Ext), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	t.Run("ignores other files", func(t *testing.T) {
		dir := copyShipped(t)
		os.WriteFile(filepath.Join(dir, "README.md"), []byte("# channels"), 0o644)
		os.WriteFile(filepath.Join(dir, ".stable.yaml.swp"), []byte("junk"), 0o644)
		os.Mkdir(filepath.Join(dir, "old"), 0o755)
		if _, err := LoadDir(dir); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("yml refused", func(t *testing.T) {
		dir := copyShipped(t)
		os.WriteFile(filepath.Join(dir, "beta.yml"), []byte("name: beta\n"), 0o644)
		if _, err := LoadDir(dir); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "beta.yml") {
			t.Errorf("LoadDir = %v", err)
		}
	})
	t.Run("missing source", func(t *testing.T) {
		dir := copyShipped(t)
		os.Remove(filepath.Join(dir, "testing.yaml"))
		if _, err := LoadDir(dir); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `promotes_from names "testing"`) {
			t.Errorf("LoadDir = %v", err)
		}
	})
	t.Run("every bad file reported", func(t *testing.T) {
		dir := copyShipped(t)
		os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("name: a\nx: 1\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("name: b\ny: 1\n"), 0o644)
		_, err := LoadDir(dir)
		if err == nil || !strings.Contains(err.Error(), "field x") || !strings.Contains(err.Error(), "field y") {
			t.Errorf("LoadDir = %v", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if _, err := LoadDir(t.TempDir()); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no *.yaml channel definitions") {
			t.Errorf("LoadDir = %v", err)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		if _, err := LoadDir(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadDir = %v", err)
		}
	})
}

func TestAllowsPublisher(t *testing.T) {
	c := valid() // publishers: release, token:ci-build
	for _, x := range []struct {
		role, token string
		want        bool
	}{
		{"release", "", true},
		{"release", "laptop", true},
		{"admin", "", false},
		{"device", "", false},
		{"", "ci-build", true},
		{"device", "ci-build", true}, // the token is named explicitly
		{"", "other", false},
		{"token:ci-build", "", false}, // a role is not a token name
		{"", "", false},
	} {
		if got := c.AllowsPublisher(x.role, x.token); got != x.want {
			t.Errorf("AllowsPublisher(%q, %q) = %v, want %v", x.role, x.token, got, x.want)
		}
	}
}

func TestRolloutHelpers(t *testing.T) {
	c := valid()
	r, err := c.DefaultRamp()
	if err != nil || r.String() != "1%,10%@24h,100%@72h" {
		t.Fatalf("DefaultRamp = %v, %v", r, err)
	}
	if p := c.HaltPolicy(); p != (rollout.HaltPolicy{Threshold: 0.05, MinSamples: 50, Window: 24 * time.Hour}) {
		t.Errorf("HaltPolicy = %+v", p)
	}
	g := c.Graph()
	if !slices.Equal(g.Barriers, []string{"10.2"}) || !slices.Equal(g.DeadEnds, []rollout.DeadEnd{{Version: "10.1.3", Successor: "10.1.4"}}) {
		t.Errorf("Graph = %+v", g)
	}
	c.Rollout.Ramp = "bad"
	if _, err := c.DefaultRamp(); !errors.Is(err, rollout.ErrBadRamp) {
		t.Errorf("DefaultRamp(bad) = %v", err)
	}
}

func TestCheckThreshold(t *testing.T) {
	for _, tc := range []struct {
		threshold, signers int
		ok                 bool
	}{
		{0, 0, false}, {0, 1, true}, {1, 1, true}, {2, 1, false}, {2, 2, true}, {2, 3, true}, {3, 2, false},
	} {
		c := &Channel{Name: "stable", Threshold: tc.threshold}
		err := c.CheckThreshold(tc.signers)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBelowThreshold)) {
			t.Errorf("threshold %d, %d signers: %v", tc.threshold, tc.signers, err)
		}
	}
}
