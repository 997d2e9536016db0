package e2ekit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// Nginx is a real nginx (Debian's) running one site file, with an
// access log naming the upstream of every request.
type Nginx struct {
	Dir       string // its prefix: nginx.conf, site.conf, logs
	accessLog string
}

// StartNginx runs nginx on site (a server block, with its upstreams) in a
// fresh prefix directory until the test ends, and waits until port
// accepts connections. The access log's lines are "UPSTREAM METHOD URI".
func StartNginx(t testing.TB, site string, port int) *Nginx {
	t.Helper()
	nginx := testtool.Require(t, "nginx")
	dir := t.TempDir()
	n := &Nginx{Dir: dir, accessLog: filepath.Join(dir, "access.log")}
	main := fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  log_format upstream '$upstream_addr $request_method $request_uri';
  access_log %[1]s/access.log upstream;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  include %[1]s/site.conf;
}
`, dir)
	for name, body := range map[string]string{"site.conf": site, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	// SIGTERM: nginx's fast shutdown, which also ends its workers (they
	// hold the output pipe).
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return n
		}
		if i == 100 {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %s\n%s", out.String(), b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Mark is the access log's current length: Upstreams(mark, …) then
// counts only the requests made after it.
func (n *Nginx) Mark(t testing.TB) int64 {
	t.Helper()
	fi, err := os.Stat(n.accessLog)
	if os.IsNotExist(err) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Upstreams counts, per upstream address, the requests logged after mark
// whose URI starts with prefix.
func (n *Nginx) Upstreams(t testing.TB, mark int64, prefix string) map[string]int {
	t.Helper()
	f, err := os.Open(n.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(mark, 0); err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && strings.HasPrefix(fields[2], prefix) {
			m[fields[0]]++
		}
	}
	return m
}
