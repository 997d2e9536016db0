package e2ekit

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/pgtest"
)

// Replicas is N mxos-server processes (the binary under test) on one
// PostgreSQL database, each with its own data directory (W.Dir/data-I),
// as the README sets replicas up; keys (W.Dir/keys, W.Dir/online-keys)
// and tokens made with the documented commands.
type Replicas struct {
	W       WorkDir
	DSN     string
	URLs    []string // server URLs (without /repo)
	Release string   // a release token
	Admin   string   // an admin token
}

// StartReplicas starts n servers on a fresh PostgreSQL database, with
// extra flags for server i from extra(i) (nil: none), after setup (nil:
// none) ran in the work directory once the keys exist.
func StartReplicas(t *testing.T, n int, extra func(i int) []string, setup func(WorkDir)) *Replicas {
	t.Helper()
	r := &Replicas{W: WorkDir{t, t.TempDir()}, DSN: pgtest.Database(t)}
	w := r.W
	w.Run(nil, Mxosctl(), "keys", "generate", "--dir", "keys")
	w.Run(nil, Mxosctl(), "keys", "generate", "--dir", "online-keys")
	if setup != nil {
		setup(w)
	}
	for i := range n {
		args := []string{"--database", r.DSN, "--release-keys", filepath.Join(w.Dir, "keys"),
			"--online-keys", filepath.Join(w.Dir, "online-keys"), "--channels", filepath.Join(testtool.ModuleRoot(t), "channels")}
		if extra != nil {
			args = append(args, extra(i)...)
		}
		repoURL := StartServer(t, filepath.Join(w.Dir, "data-"+strconv.Itoa(i)), args...)
		r.URLs = append(r.URLs, repoURL[:len(repoURL)-len("/repo")])
		if i == 0 { // the schema exists once the first server runs
			r.Release = r.Token("release", "--name", "equipo")
			r.Admin = r.Token("admin", "--name", "admin")
		}
	}
	return r
}

// Token creates a token with `mxos-server token create` on the database.
func (r *Replicas) Token(role string, args ...string) string {
	r.W.T.Helper()
	return FirstLine(r.W.Run(nil, MxosServer(), append([]string{"token", "create", "--data", "data-0", "--database", r.DSN, "--role", role}, args...)...))
}

// Ctl runs mxosctl against server i with token.
func (r *Replicas) Ctl(i int, token string, args ...string) string {
	r.W.T.Helper()
	return r.W.Run([]string{"MXOS_SERVER=" + r.URLs[i], "MXOS_TOKEN=" + token}, Mxosctl(), args...)
}
