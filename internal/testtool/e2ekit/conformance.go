package e2ekit

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// conformanceBinary builds the OCI conformance suite (a tool in go.mod)
// into dir; it builds offline from the module cache.
func conformanceBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "conformance")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/opencontainers/distribution-spec/conformance")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the conformance suite: %v\n%s", err, out)
	}
	return bin
}

// RunConformance runs the suite, every area on, against the registry at
// host (host:port) over plain HTTP with a release token; env is added
// last (it wins: e.g. OCI_TLS=enabled and SSL_CERT_FILE).
func RunConformance(t testing.TB, host, releaseToken string, env ...string) {
	t.Helper()
	bin := conformanceBinary(t)
	results := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir() // no stray oci-conformance.yaml
	settings := []string{
		"OCI_REGISTRY=" + host,
		"OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_USERNAME=mxos",
		"OCI_PASSWORD=" + releaseToken,
		"OCI_RESULTS_DIR=" + results,
		"OCI_VERSION=1.1",
		"OCI_LOG=warn",
		"OCI_API_PULL=true",
		"OCI_API_PUSH=true",
		"OCI_API_BLOBS_ATOMIC=true",
		"OCI_API_BLOBS_DELETE=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_BLOBS_MOUNT_ANONYMOUS=true",
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_MANIFESTS_ATOMIC=true",
		"OCI_API_MANIFESTS_DELETE=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_TAG_PARAM=true",
		"OCI_API_TAGS_ATOMIC=true",
		"OCI_API_TAGS_DELETE=true",
		"OCI_API_TAGS_LIST=true",
		"OCI_API_REFERRER=true",
		"OCI_DATA_IMAGE=true",
		"OCI_DATA_INDEX=true",
		"OCI_DATA_INDEX_LIST=true",
		// Sparse image manifests (layers never pushed) are refused on
		// purpose with MANIFEST_BLOB_UNKNOWN; sparse indexes are accepted
		// and tested in internal/oci/registry.
		"OCI_DATA_SPARSE=false",
		"OCI_DATA_ARTIFACT=true",
		"OCI_DATA_SUBJECT=true",
		"OCI_DATA_SUBJECT_MISSING=true",
		"OCI_DATA_ARTIFACT_LIST=true",
		"OCI_DATA_SUBJECT_LIST=true",
		"OCI_DATA_DATA_FIELD=true",
		"OCI_DATA_NONDISTRIBUTABLE=true",
		"OCI_DATA_CUSTOM_FIELDS=true",
		"OCI_DATA_NO_LAYERS=true",
		"OCI_DATA_EMPTY_BLOB=true",
		"OCI_DATA_SHA512=true",
	}
	cmd.Env = append(append(CleanEnv(), settings...), env...)
	out, err := cmd.CombinedOutput()
	failed, total, rerr := conformanceFailures(filepath.Join(results, "junit.xml"))
	if rerr != nil {
		t.Fatalf("reading the conformance results: %v (suite: %v)\n%s", rerr, err, out)
	}
	if err != nil || len(failed) > 0 || total == 0 {
		t.Fatalf("conformance failed (%v): %d of %d tests failed or were skipped:\n%s\n\noutput:\n%s",
			err, len(failed), total, strings.Join(failed, "\n"), LastLines(string(out), 80))
	}
	t.Logf("conformance: %d tests passed", total)
}

// conformanceFailures reads the suite's junit.xml and returns the tests
// that did not pass (with their errors) and how many ran. A skipped test
// counts as a failure: every area is on, so a skip means the suite saw a
// feature as unsupported.
func conformanceFailures(path string) ([]string, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var suites struct {
		Suites []struct {
			Cases []struct {
				Name      string `xml:"name,attr"`
				Status    string `xml:"status,attr"`
				SystemOut string `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	var failed []string
	total := 0
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			total++
			switch c.Status {
			case "passed":
			case "skipped":
				if !strings.Contains(c.Name, "Sparse") && !strings.Contains(c.SystemOut, "disabled") {
					failed = append(failed, c.Name+": skipped: "+LastLines(c.SystemOut, 3))
				}
			default:
				failed = append(failed, c.Name+": "+c.Status+": "+LastLines(c.SystemOut, 5))
			}
		}
	}
	return failed, total, nil
}

// CleanEnv is the environment without proxies and without OCI_ settings
// of the caller's shell.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OCI_") {
			continue
		}
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// LastLines is the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
