package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mxos-linux/mxos-update/internal/credindex"
	"github.com/mxos-linux/mxos-update/internal/updates"
)

// metrics are the server's Prometheus series, on a private registry so
// tests can run many servers in one process. Labels never carry device
// ids or tokens: cardinality stays bounded and secrets stay out.
type metrics struct {
	reg     *prometheus.Registry
	checks  *prometheus.CounterVec
	reports *prometheus.CounterVec
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
			Help: "Device reports received, by event.",
		}, []string{"event"}),
	}
	m.reg.MustRegister(m.checks, m.reports,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
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
