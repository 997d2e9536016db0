package server

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v4"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// scrape parses a /metrics answer.
func scrape(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%.1000s", err, body)
	}
	return fams
}

// value is the value of the series of family name with exactly these
// labels (a counter, gauge or a histogram's count); found is false when
// there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsForOperators scrapes /metrics after a rollout with checks,
// reports of each class and a halt: HTTP latency by route, reports by
// class, the rollout's state, share and window, devices by channel and
// version, and database and storage errors are there with the values
// that happened, and every series the shipped alert examples
// (deploy/prometheus/alerts.yml) use exists.
func TestMetricsForOperators(t *testing.T) {
	f := newAPIFixture(t)
	id := f.startRollout(t, "stable", "10.0.2")
	for i, ev := range []api.Event{api.EventHealthOK, api.EventHealthFailed, api.EventRefused} {
		dev := []string{"aula-1", "aula-2", "aula-3"}[i]
		cred := deviceToken(t, f.store, dev)
		if code, body := f.do(t, cred, "POST", "/api/v1/check", api.CheckRequest{DeviceID: dev, Arch: "x86_64", Channel: "stable", Version: "10.0.1"}); code != 200 {
			t.Fatalf("check: %d %s", code, body)
		}
		if code, body := f.do(t, cred, "POST", "/api/v1/report", api.ReportRequest{DeviceID: dev, Seq: 1, RolloutID: id, Version: "10.0.2", Event: ev}); code != 204 {
			t.Fatalf("report: %d %s", code, body)
		}
	}
	if code, body := f.do(t, f.tokens["release"], "POST", "/api/v1/rollouts/"+id+"/halt", api.RolloutActionRequest{Reason: "wifi"}); code != 200 {
		t.Fatalf("halt: %d %s", code, body)
	}
	f.do(t, "", "GET", "/no/such/route", nil)
	code, body := f.do(t, "", "GET", "/metrics", nil)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	fams := scrape(t, body)
	ro := map[string]string{"channel": "stable", "arch": "x86_64", "version": "10.0.2"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64 // -1: at least one
	}{
		{"mxos_http_request_duration_seconds", map[string]string{"route": "POST /api/v1/check", "code": "2xx"}, 3},
		{"mxos_http_request_duration_seconds", map[string]string{"route": "POST /api/v1/report", "code": "2xx"}, 3},
		{"mxos_http_request_duration_seconds", map[string]string{"route": "unmatched", "code": "4xx"}, 1},
		{"mxos_update_reports_total", map[string]string{"event": "health-ok", "class": "success"}, 1},
		{"mxos_update_reports_total", map[string]string{"event": "health-failed", "class": "release-failure"}, 1},
		{"mxos_update_reports_total", map[string]string{"event": "refused", "class": "not-counted"}, 1},
		{"mxos_rollout_state", with(ro, "state", "halted"), 1},
		{"mxos_rollout_share", ro, 0},
		{"mxos_rollout_window_reports", with(ro, "result", "failure"), 1},
		{"mxos_rollout_window_reports", with(ro, "result", "success"), 1},
		{"mxos_devices", map[string]string{"channel": "stable", "version": "10.0.1"}, 3},
		{"mxos_db_errors_total", map[string]string{}, 0},
		{"mxos_fleet_scrape_error", map[string]string{}, 0},
	} {
		got, ok := value(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := value(fams, "mxos_rollout_state", with(ro, "state", "active")); ok {
		t.Error("a halted rollout is also exported as active")
	}
	if strings.Contains(string(body), "aula-") {
		t.Error("metrics name devices")
	}

	// A server with its repository in object storage counts the store's
	// failures.
	data := newDataDir(t)
	st, err := object.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	counted := object.CountErrors(st)
	srv, err := New(Config{DataDir: data, RepoStore: counted, StorageErrors: counted.Errors})
	if err != nil {
		t.Fatal(err)
	}
	_, body2 := rawGet(t, serveHandler(t, srv), "/metrics")
	fams2 := scrape(t, body2)
	if got, ok := value(fams2, "mxos_storage_errors_total", map[string]string{}); !ok || got != 0 {
		t.Errorf("mxos_storage_errors_total = %v (found %v), want 0", got, ok)
	}

	// The alert examples parse and use only series the server exports.
	b, err := os.ReadFile(filepath.Join(testtool.ModuleRoot(t), "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				For         string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	name := regexp.MustCompile(`mxos_[a-z0-9_]+`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %q: needs alert, expr, a severity label and a summary", r.Alert)
			}
			for _, m := range name.FindAllString(r.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count")
				if fams[base] == nil && fams2[base] == nil {
					t.Errorf("alert %s uses %s, which the server does not export", r.Alert, m)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("alerts.yml has %d alerts", n)
	}
}
