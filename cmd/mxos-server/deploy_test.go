package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v4"

	"github.com/mxos-linux/mxos-update/internal/storage/storageconfig"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// serverEnvNames is every MXOS_ variable an mxos-server flag reads.
func serverEnvNames() map[string]bool {
	known := map[string]bool{}
	root := newRootCmd()
	for _, fs := range []*pflag.FlagSet{root.Flags(), root.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			for _, n := range envName.FindAllString(f.Usage, -1) {
				known[n] = true
			}
		})
	}
	return known
}

func loadYAML(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

// TestShippedCompose: deploy/compose's servers set only variables the
// server reads, their storage file parses, and the load balancer's
// nginx.conf passes nginx -t (service names pointed at 127.0.0.1).
func TestShippedCompose(t *testing.T) {
	known := serverEnvNames()
	doc := loadYAML(t, "../../deploy/compose/compose.yaml")[0]
	services, _ := doc["services"].(map[string]any)
	servers := 0
	for name, v := range services {
		svc := v.(map[string]any)
		if svc["image"] != "localhost/mxos-server:dev" {
			continue
		}
		servers++
		env, _ := svc["environment"].(map[string]any)
		if len(env) == 0 {
			t.Errorf("service %s: no environment", name)
		}
		for k := range env {
			if !known[k] {
				t.Errorf("service %s sets %s, which no mxos-server flag reads", name, k)
			}
		}
		if env["MXOS_STORAGE"] == nil || env["MXOS_INSECURE_HTTP"] != "true" {
			t.Errorf("service %s: no bucket or no plain HTTP behind the balancer: %v", name, env)
		}
	}
	if servers != 2 {
		t.Fatalf("%d mxos-server services, want the writer and the replicas", servers)
	}
	b, err := os.ReadFile("../../deploy/compose/storage.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := storageconfig.Parse(b); err != nil || c.Kind != "s3" {
		t.Fatalf("deploy/compose/storage.yaml: %+v %v", c, err)
	}

	nginx := testtool.Require(t, "nginx")
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "updates.example.mx")
	conf, err := os.ReadFile("../../deploy/compose/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	site := strings.NewReplacer("replica:8080", "127.0.0.1:8080", "writer:8080", "127.0.0.1:8081",
		"/etc/nginx/tls/fullchain.pem", cert, "/etc/nginx/tls/privkey.pem", key).Replace(string(conf))
	main := "pid " + filepath.Join(dir, "nginx.pid") + ";\nerror_log stderr;\nevents {}\nhttp {\naccess_log off;\n" + site + "\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, "-t", "-q", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t on deploy/compose/nginx.conf: %v\n%s", err, out)
	}
}

// TestShippedKubernetes: deploy/k8s's servers take flags and variables
// the server knows, mount only volumes they declare, their storage
// ConfigMap parses, and the Ingress routes to Services that exist.
func TestShippedKubernetes(t *testing.T) {
	known := serverEnvNames()
	docs := loadYAML(t, "../../deploy/k8s/mxos-update.yaml")
	services := map[string]bool{}
	var backends []string
	deployments := 0
	for _, d := range docs {
		meta, _ := d["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		if d["apiVersion"] == nil || name == "" {
			t.Fatalf("a document without apiVersion or name: %v", d)
		}
		switch d["kind"] {
		case "Service":
			services[name] = true
		case "ConfigMap":
			data, _ := d["data"].(map[string]any)
			if s, ok := data["storage.yaml"].(string); ok {
				if _, err := storageconfig.Parse([]byte(s)); err != nil {
					t.Errorf("ConfigMap %s: storage.yaml: %v", name, err)
				}
			}
		case "Ingress":
			spec := d["spec"].(map[string]any)
			for _, r := range spec["rules"].([]any) {
				for _, p := range r.(map[string]any)["http"].(map[string]any)["paths"].([]any) {
					svc := p.(map[string]any)["backend"].(map[string]any)["service"].(map[string]any)
					backends = append(backends, svc["name"].(string))
				}
			}
		case "Deployment":
			deployments++
			pod := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			vols := map[string]bool{}
			for _, v := range pod["volumes"].([]any) {
				vols[v.(map[string]any)["name"].(string)] = true
			}
			for _, c := range pod["containers"].([]any) {
				c := c.(map[string]any)
				var args []string
				for _, a := range c["args"].([]any) {
					args = append(args, a.(string))
				}
				if err := newRootCmd().ParseFlags(args); err != nil {
					t.Errorf("Deployment %s: args %q: %v", name, args, err)
				}
				for _, e := range c["env"].([]any) {
					if n := e.(map[string]any)["name"].(string); !known[n] {
						t.Errorf("Deployment %s sets %s, which no mxos-server flag reads", name, n)
					}
				}
				for _, m := range c["volumeMounts"].([]any) {
					if n := m.(map[string]any)["name"].(string); !vols[n] {
						t.Errorf("Deployment %s mounts %s, which it does not declare", name, n)
					}
				}
			}
		}
	}
	if deployments != 2 || len(backends) == 0 {
		t.Fatalf("%d Deployments, %d Ingress backends", deployments, len(backends))
	}
	for _, b := range backends {
		if !services[b] {
			t.Errorf("the Ingress routes to Service %s, which does not exist", b)
		}
	}
}

// TestContainerImage builds deploy/container/Containerfile with Debian's
// podman (vfs storage, chroot isolation: what works here) and checks the
// image: its entry point, an unprivileged user, and a binary that runs.
// (podman run itself is refused here: crun cannot set rlimits in this
// sandbox, so the binary is run from the mounted image instead.)
func TestContainerImage(t *testing.T) {
	podman := testtool.Require(t, "podman")
	testtool.RequireRoot(t, "podman builds images as root here")
	storage := t.TempDir()
	flags := "--root " + storage + " --storage-driver vfs"
	tag := "localhost/mxos-server:test"
	build := exec.Command("../../deploy/container/build.sh", tag)
	build.Env = append(os.Environ(), "PODMAN_FLAGS="+flags, "BUILD_FLAGS=--isolation chroot")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("deploy/container/build.sh: %v\n%s", err, out)
	}
	pm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(podman, append(strings.Fields(flags), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	t.Cleanup(func() { exec.Command(podman, append(strings.Fields(flags), "rmi", "-a", "-f")...).Run() })
	if got := pm("image", "inspect", "--format", "{{.Config.Entrypoint}} {{.Config.User}}", tag); got != "[/usr/bin/mxos-server] 65532:65532" {
		t.Fatalf("image config: %q", got)
	}
	root := pm("image", "mount", tag)
	t.Cleanup(func() { exec.Command(podman, append(strings.Fields(flags), "image", "unmount", tag)...).Run() })
	for _, f := range []string{"usr/bin/mxosctl", "etc/ssl/certs/ca-certificates.crt", "etc/mxos-server/channels/stable.yaml"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the image lacks /%s: %v", f, err)
		}
	}
	out, err := exec.Command(filepath.Join(root, "usr/bin/mxos-server"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mxos-server") {
		t.Fatalf("the image's mxos-server --version: %v\n%s", err, out)
	}
}
