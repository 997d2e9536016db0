package updater

import (
	"net/http"
	"time"

	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
)

// Transports is the agent's HTTP set-up from the configuration: with
// ca_file, every request (update API, repository mirrors, signed channel
// metadata, the registry for transport oci) trusts that CA next to the
// system's roots. Without it every field keeps its package's default.
type Transports struct {
	// API is the option for client.New.
	API client.Option
	// Repo is for pull.Puller.HTTP and the OCI fetches; nil: the default.
	Repo *http.Client
	// Meta is for Agent.MetaHTTP; nil: the default.
	Meta *http.Client
}

// repoHeaderTimeout bounds the wait for a mirror's response headers.
const repoHeaderTimeout = 30 * time.Second

// Transports builds the HTTP clients the config asks for.
func (c *Config) Transports() (Transports, error) {
	cfg, err := client.TLSConfig(c.CAFile)
	if err != nil {
		return Transports{}, i18n.Errorf("ca_file: %w", err)
	}
	t := Transports{API: client.WithTLSConfig(cfg)}
	if cfg == nil {
		return t, nil
	}
	repo := client.Transport(cfg)
	repo.MaxIdleConnsPerHost = pull.DefaultParallel
	repo.ResponseHeaderTimeout = repoHeaderTimeout
	t.Repo = &http.Client{Transport: repo}
	t.Meta = &http.Client{Timeout: 60 * time.Second, Transport: client.Transport(cfg)}
	return t, nil
}
