package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/credindex"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/event"
	"github.com/mxos-linux/mxos-update/internal/updates"
)

// metrics are the server's Prometheus series, on a private registry so
// tests can run many servers in one process. Labels never carry device
// ids or tokens: cardinality stays bounded and secrets stay out.
//
// What a fleet operator watches (deploy/prometheus/alerts.yml has alert
// examples on them): HTTP latency by route (the mux pattern, so the label
// set is bounded) and status class; check answers by reason; reports by
// event and class (release failures are what auto-halt counts); per
// channel and architecture, the current rollout's state, share and the
// reports in its halt window; registered devices by channel and version;
// and failures of the database and of object storage. Fleet series are
// read from the database when scraped (devices counted at most every
// DeviceCountEvery), so every replica exports the same values.
type metrics struct {
	reg     *prometheus.Registry
	checks  *prometheus.CounterVec
	reports *prometheus.CounterVec
	http    *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxos_update_checks_total",
			Help: "Update checks answered, by channel and decision reason.",
		}, []string{"channel", "reason"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxos_update_reports_total",
			Help: "Device reports received, by event and class (release-failure: counts toward auto-halt; not-counted: refusals, download and config errors; success; progress).",
		}, []string{"event", "class"}),
		http: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mxos_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route (the server's URL pattern; /v2/ for the registry) and status class.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "code"}),
	}
	m.reg.MustRegister(m.checks, m.reports, m.http,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// reportClass sorts an event into the classes of package event.
func reportClass(e event.Event) string {
	switch {
	case e.ReleaseFailure():
		return "release-failure"
	case e == event.HealthOK:
		return "success"
	case e == event.Refused || e == event.DownloadFailed || e == event.ConfigError || e == event.Failed:
		return "not-counted"
	}
	return "progress"
}

// errorCounter exports a count of failures kept elsewhere.
func (m *metrics) errorCounter(name, help string, n func() int64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
		func() float64 { return float64(n()) }))
}

// routeRecorder is the response writer of an instrumented request; the
// handler the mux chose writes its pattern into route.
type routeRecorder struct {
	statusRecorder
	route string
}

// instrument times every request into mxos_http_request_duration_seconds.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &routeRecorder{statusRecorder: statusRecorder{ResponseWriter: w}}
		next.ServeHTTP(rec, r)
		route := rec.route
		if route == "" {
			switch p := r.URL.Path; {
			case p == "/v2" || strings.HasPrefix(p, "/v2/"):
				route = "/v2/"
			case strings.HasPrefix(p, repoPrefix) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
				route = "GET " + repoPrefix // served before the mux (repoFirst)
			default:
				route = "unmatched" // refused before routing, or no route
			}
		}
		code := "2xx"
		if c := rec.statusCode(); c >= 100 && c < 600 {
			code = strconv.Itoa(c/100) + "xx"
		}
		s.metrics.http.WithLabelValues(route, code).Observe(time.Since(start).Seconds())
	})
}

// recordRoute tells the request's routeRecorder which pattern the mux
// chose (http.Request.Pattern, set by the mux on this request).
func recordRoute(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		for w != nil {
			if rec, ok := w.(*routeRecorder); ok {
				rec.route = r.Pattern
				return
			}
			u, ok := w.(interface{ Unwrap() http.ResponseWriter })
			if !ok {
				return
			}
			w = u.Unwrap()
		}
	})
}

// DeviceCountEvery bounds how often a scrape counts the devices (a scan
// of the devices table).
const DeviceCountEvery = 30 * time.Second

// fleetCollector reads the fleet series from the database at scrape time.
type fleetCollector struct {
	a       *apiState
	rollout *prometheus.Desc
	share   *prometheus.Desc
	window  *prometheus.Desc
	devices *prometheus.Desc
	scrapeE *prometheus.Desc

	mu      sync.Mutex
	counted time.Time
	counts  []db.VersionCount
}

func newFleetCollector(a *apiState) *fleetCollector {
	ra := []string{"channel", "arch", "version"}
	return &fleetCollector{a: a,
		rollout: prometheus.NewDesc("mxos_rollout_state", "1 for the state of the current rollout of each channel and architecture (pending, active, paused, halted, complete).", append(ra, "state"), nil),
		share:   prometheus.NewDesc("mxos_rollout_share", "Share of the fleet the current rollout admits now (0 to 1; 0 while paused or halted).", ra, nil),
		window:  prometheus.NewDesc("mxos_rollout_window_reports", "Reports on the current rollout within its channel's auto-halt window, by result (success, failure).", append(ra, "result"), nil),
		devices: prometheus.NewDesc("mxos_devices", "Registered devices by channel and version.", []string{"channel", "version"}, nil),
		scrapeE: prometheus.NewDesc("mxos_fleet_scrape_error", "1 when the fleet series could not be read from the database on this scrape.", nil, nil),
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rollout, c.share, c.window, c.devices, c.scrapeE} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	failed := 0.0
	if err := c.collectRollouts(ctx, ch); err != nil {
		failed = 1
		c.a.log.Warn("metrics: reading rollouts", zap.Error(err))
	}
	counts, err := c.deviceCounts(ctx)
	if err != nil {
		failed = 1
		c.a.log.Warn("metrics: counting devices", zap.Error(err))
	}
	for _, vc := range counts {
		ch <- prometheus.MustNewConstMetric(c.devices, prometheus.GaugeValue, float64(vc.Devices), vc.Channel, vc.Version)
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeE, prometheus.GaugeValue, failed)
}

func (c *fleetCollector) collectRollouts(ctx context.Context, ch chan<- prometheus.Metric) error {
	a := c.a
	for _, chn := range a.channels.Channels() {
		for _, arch := range chn.Arches() {
			ro, err := a.store.CurrentRollout(ctx, chn.Name, arch)
			if errors.Is(err, db.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			st, err := a.rolloutStatus(ctx, ro)
			if err != nil {
				return err
			}
			ch <- prometheus.MustNewConstMetric(c.rollout, prometheus.GaugeValue, 1, ro.Channel, ro.Arch, ro.Version, st.State)
			ch <- prometheus.MustNewConstMetric(c.share, prometheus.GaugeValue, st.Fraction, ro.Channel, ro.Arch, ro.Version)
			ch <- prometheus.MustNewConstMetric(c.window, prometheus.GaugeValue, float64(st.Successes), ro.Channel, ro.Arch, ro.Version, "success")
			ch <- prometheus.MustNewConstMetric(c.window, prometheus.GaugeValue, float64(st.Failures), ro.Channel, ro.Arch, ro.Version, "failure")
		}
	}
	return nil
}

// deviceCounts returns the device counts, read again when older than
// DeviceCountEvery (the last good ones when that fails).
func (c *fleetCollector) deviceCounts(ctx context.Context) ([]db.VersionCount, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts != nil && time.Since(c.counted) < DeviceCountEvery {
		return c.counts, nil
	}
	counts, err := c.a.store.DeviceVersionCounts(ctx)
	if err != nil {
		return c.counts, err
	}
	if counts == nil {
		counts = []db.VersionCount{}
	}
	c.counts, c.counted = counts, time.Now()
	return counts, nil
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// deviceIndex exports the state of the update service's device index.
func (m *metrics) deviceIndex(u *updates.Service) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mxos_device_index_ready",
			Help: "1 once every registered device is in the check index (checks then read no device row), else 0.",
		}, func() float64 {
			if u.IndexReady() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mxos_device_index_devices",
			Help: "Devices in the check index.",
		}, func() float64 { return float64(u.IndexedDevices()) }))
}

// credentialIndex exports the state of the device credential index.
func (m *metrics) credentialIndex(x *credindex.Index) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mxos_credential_index_ready",
			Help: "1 while device credentials are authorized from memory (loaded, and following the token change feed), else 0.",
		}, func() float64 {
			if x.Ready() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mxos_credential_index_credentials",
			Help: "Device credentials in the credential index.",
		}, func() float64 { return float64(x.Len()) }))
}
