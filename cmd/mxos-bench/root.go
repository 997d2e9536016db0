package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// options are the benchmark settings shared by every subcommand.
type options struct {
	quick        bool
	duration     time.Duration
	warmup       time.Duration
	concurrency  int
	rounds       int
	files        int
	size         byteSize
	smallObjects int
	largeObjects int
	largeSize    byteSize
	objects      []string
	tree         string
	tree2        string
	noScratch    bool
	tar          bool
	seed         uint64
	work         string
	keep         bool
	jsonOut      string
	cpuProfile   string
	mxosctl      string
	mxosServer   string
	nginx        string
	ostree       string
	timeout      time.Duration
	devices      int
	databases    []string
	openRate     float64
	checkEvery   time.Duration
	channels     string
	distribution string
	replicas     int
}

// quickDefaults are the smoke-test sizes of --quick, applied to every flag
// the user did not set.
var quickDefaults = map[string]string{
	"duration":      "1s",
	"warmup":        "200ms",
	"concurrency":   "8",
	"rounds":        "1",
	"files":         "300",
	"size":          "6MB",
	"small-objects": "200",
	"large-objects": "2",
	"large-size":    "4MiB",
	"timeout":       "2m",
	"devices":       "2000",
	"databases":     "sqlite",
	"check-every":   "0s",
}

// newRootCmd builds the command tree; argv is the command line as given,
// printed at the top of every report.
func newRootCmd(argv []string) *cobra.Command {
	var o options
	root := &cobra.Command{
		Use:   "mxos-bench",
		Short: "Benchmark MxOS Update side by side with nginx and ostree",
		Long: `mxos-bench runs our code and its peer side by side in one run and prints a
table of figures and ratios (ours/peer) with the target of each row:

  serve    mxos-server vs nginx serving the same repository (127.0.0.1 only)
  publish  mxosctl publish vs ostree commit of the same tree
  pull     ostree pull from mxos-server vs from nginx
  check    the update check API (POST /api/v1/check) with --devices
           registered devices vs a trivial net/http JSON handler
  registry blob pulls (1 MB, 100 MB) from our OCI registry vs
           distribution/distribution v3 serving the same blobs
  all      the four in a row (registry and devpull run on their own)
  devpull  our device pull vs ostree pull of the same commits from our server
  deltas   our static deltas vs ostree static-delta generate and vs loose
           objects of the same update: bytes, and apply time against
           ostree pull --require-static-deltas
  fleet    --replicas mxos-servers behind nginx on one PostgreSQL and one S3
           bucket, --devices checking at their cadence and reporting, a
           publish, a halt and a kill -9 in the middle: checks/s, p50/p99,
           errors, halt visibility, nothing lost, PostgreSQL's load

Sizes default to a full run (several minutes); --quick is a smoke-size run.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.BoolVar(&o.quick, "quick", false, "smoke-size run: tiny trees, 1 s phases, one round")
	pf.DurationVar(&o.duration, "duration", 5*time.Second, "length of each measured load phase (serve, check)")
	pf.DurationVar(&o.warmup, "warmup", time.Second, "untimed load before each measured phase (serve, check)")
	pf.IntVar(&o.concurrency, "concurrency", 32, "concurrent client requests (serve, check)")
	pf.IntVar(&o.rounds, "rounds", 3, "alternating rounds per figure; the median is reported")
	pf.IntVar(&o.files, "files", 20000, "files in the generated publish tree")
	o.size = 500 * 1000 * 1000
	pf.Var(&o.size, "size", "total bytes of the generated publish tree (e.g. 500MB, 2GiB)")
	pf.IntVar(&o.smallObjects, "small-objects", 5000, "small files (1-16 KiB) in the serve repository")
	pf.IntVar(&o.largeObjects, "large-objects", 4, "large incompressible files in the serve repository")
	o.largeSize = 64 << 20
	pf.Var(&o.largeSize, "large-size", "size of each large file in the serve repository")
	pf.StringSliceVar(&o.objects, "objects", []string{"small", "large"}, "serve phases to run: small, large or both")
	pf.StringVar(&o.tree, "tree", "", "publish this directory or tarball instead of a generated tree")
	pf.StringVar(&o.tree2, "tree2", "", "deltas: release 2 is this directory or tarball instead of --tree with every 20th file changed")
	pf.BoolVar(&o.tar, "tar", true, "also publish the generated tree as a tarball (--tree=tar=FILE)")
	pf.Uint64Var(&o.seed, "seed", 1, "seed of the generated trees")
	pf.StringVar(&o.work, "work", "", "work directory; generated trees there are reused (default: a temp dir)")
	pf.BoolVar(&o.keep, "keep", false, "keep the work directory and every repository made")
	pf.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	pf.StringVar(&o.cpuProfile, "cpuprofile", "", "directory for CPU profiles of our server (and publisher: then the in-process publish-child instead of mxosctl)")
	pf.StringVar(&o.mxosctl, "mxosctl", "", "mxosctl binary to time (default: built from this module's cmd/mxosctl)")
	pf.StringVar(&o.mxosServer, "mxos-server", "", "mxos-server binary to run (default: built from this module's cmd/mxos-server)")
	pf.StringVar(&o.nginx, "nginx", "nginx", "nginx binary")
	pf.StringVar(&o.ostree, "ostree", "ostree", "ostree binary")
	pf.DurationVar(&o.timeout, "timeout", 30*time.Minute, "limit for each external command (commit, publish, pull)")
	pf.IntVar(&o.devices, "devices", 100000, "registered devices in the check benchmark's store")
	pf.StringSliceVar(&o.databases, "databases", []string{"sqlite", "postgres"}, "database engines the check benchmark runs our server on: sqlite, postgres (a local cluster it starts)")
	pf.Float64Var(&o.openRate, "open-rate", 0.25, "check: also send checks open-loop (Poisson arrivals, as independent devices do) at this fraction of the trivial handler's closed-loop rate, and report the latency (0: skip)")
	pf.DurationVar(&o.checkEvery, "check-every", time.Hour, "check: also send checks open-loop at the rate of a fleet of --devices each checking this often (0: skip)")
	pf.StringVar(&o.distribution, "distribution", "", "distribution/distribution v3 registry binary (default: built once from the module proxy into the user cache)")
	pf.IntVar(&o.replicas, "replicas", 3, "fleet: mxos-server replicas behind nginx (the first is the writer; the last is killed)")
	pf.StringVar(&o.channels, "channels", "", "channel definitions for check (default: channels/ of the module root)")

	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Hidden {
			return nil
		}
		if o.quick {
			for name, val := range quickDefaults {
				f := cmd.Flags().Lookup(name)
				if f == nil || f.Changed {
					continue
				}
				if err := f.Value.Set(val); err != nil {
					return fmt.Errorf("--quick: setting --%s: %w", name, err)
				}
			}
		}
		return o.validate()
	}

	sub := func(use, short string, parts ...part) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runBench(cmd, o, commandLine(argv), parts)
			},
		}
	}
	root.AddCommand(
		sub("serve", "mxos-server vs nginx: requests/s on small objects, MB/s on large ones", partServe),
		sub("publish", "mxosctl publish vs ostree commit: time and repository size", partPublish),
		sub("pull", "ostree pull from mxos-server vs from nginx: time", partPull),
		sub("check", "update check API vs a trivial Go handler: requests/s, p50/p99 latency", partCheck),
		sub("all", "serve, publish, pull and check in one run", partServe, partPublish, partPull, partCheck),
		sub("registry", "our OCI registry vs distribution v3: blob pull MB/s", partRegistry),
		newDevpullCmd(&o, argv), newDevpullServeChildCmd(), newDevpullChildCmd(),
		newDeltasCmd(&o, argv),
		newFleetCmd(&o, argv),
		newPublishChildCmd(),
		newCheckChildCmd(),
		newTrivialChildCmd(),
	)
	return root
}

func (o *options) validate() error {
	switch {
	case o.duration <= 0 || o.duration > time.Hour:
		return errors.New("--duration must be between 0 and 1h")
	case o.warmup < 0 || o.warmup > time.Hour:
		return errors.New("--warmup must be between 0 and 1h")
	case o.concurrency < 1 || o.concurrency > 4096:
		return errors.New("--concurrency must be between 1 and 4096")
	case o.rounds < 1 || o.rounds > 100:
		return errors.New("--rounds must be between 1 and 100")
	case o.files < 10:
		return errors.New("--files must be at least 10")
	case o.size < 1<<10:
		return errors.New("--size must be at least 1 KiB")
	case o.smallObjects < 1:
		return errors.New("--small-objects must be at least 1")
	case o.largeObjects < 1:
		return errors.New("--large-objects must be at least 1")
	case o.largeSize < 1<<20:
		return errors.New("--large-size must be at least 1 MiB")
	case o.timeout <= 0:
		return errors.New("--timeout must be positive")
	case o.devices < 1 || o.devices > 10_000_000:
		return errors.New("--devices must be between 1 and 10000000")
	case o.openRate < 0 || o.openRate > 1:
		return errors.New("--open-rate must be between 0 and 1")
	case o.checkEvery < 0 || (o.checkEvery > 0 && o.checkEvery < time.Second):
		return errors.New("--check-every must be 0 or at least 1s")
	case o.replicas < 2 || o.replicas > 16:
		return errors.New("--replicas must be between 2 and 16")
	case len(o.objects) == 0:
		return errors.New("--objects must name small, large or both")
	}
	for _, k := range o.objects {
		if k != "small" && k != "large" {
			return fmt.Errorf("--objects: unknown %q: want small or large", k)
		}
	}
	return nil
}

// commandLine is the command exactly as given, for the top of the report.
func commandLine(argv []string) string {
	s := "mxos-bench"
	for _, a := range argv {
		s += " " + shellQuote(a)
	}
	return s
}

// settingsLine lists every effective setting, defaults included, so a
// figure can be reproduced even when the command line relied on defaults.
func settingsLine(cmd *cobra.Command) string {
	s := ""
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		switch f.Name {
		case "help", "json", "keep", "work", "cpuprofile", "nginx", "ostree", "mxosctl", "mxos-server", "channels", "distribution":
			return
		}
		if s != "" {
			s += " "
		}
		v := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v = strings.Join(sv.GetSlice(), ",")
		}
		s += "--" + f.Name + "=" + shellQuote(v)
	})
	return s
}

// logf writes a progress line to stderr; stdout keeps only the report.
func logf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// fileExists reports whether p exists (following symlinks).
func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
