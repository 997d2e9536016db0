package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// TLS for servers whose certificate comes from a private CA (a school's or
// ministry's own): the CA file's certificates are added to the system's
// roots, so public mirrors keep working next to the private server. The
// same CA file serves the API, the repository, the signed channel
// metadata and the registry (mxos-updater's ca_file, mxosctl's --ca-file).

// maxCAFile bounds a CA bundle.
const maxCAFile = 4 << 20

// LoadCAFile reads PEM certificates from file and returns the system roots
// plus them. An empty file name returns nil (the system roots alone).
func LoadCAFile(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	if len(b) > maxCAFile {
		return nil, fmt.Errorf("CA file %s: larger than %d bytes", file, maxCAFile)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: %w", file, errNoCerts)
	}
	return pool, nil
}

var errNoCerts = errors.New("no PEM certificates in it")

// TLSConfig is a client TLS configuration trusting caFile (see LoadCAFile)
// with TLS 1.2 at least; nil when caFile is empty.
func TLSConfig(caFile string) (*tls.Config, error) {
	pool, err := LoadCAFile(caFile)
	if err != nil || pool == nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Transport is a clone of http.DefaultTransport using cfg (nil: the
// default TLS settings).
func Transport(cfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg != nil {
		tr.TLSClientConfig = cfg.Clone()
	}
	return tr
}

// WithTLSConfig makes the client use cfg for https (nil changes nothing).
// It applies to a copy of the current http.Client.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) {
		if cfg == nil {
			return
		}
		hc := *c.hc
		hc.Transport = Transport(cfg)
		c.hc = &hc
	}
}
