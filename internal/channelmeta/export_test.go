package channelmeta

import (
	"context"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// Internals for the black-box tests of package channelmeta_test, which
// publish with channelmeta/publish (an import the package itself cannot
// have).

// SetNow sets the device clock of c.
func (c *Client) SetNow(now time.Time) { c.cfg.Now = func() time.Time { return now } }

// SetFetcher makes c fetch through f, with base as the metadata base URL.
func (c *Client) SetFetcher(base string, f fetcher.Fetcher) {
	c.base = base
	c.fetcherFor = func(context.Context) fetcher.Fetcher { return f }
}

var (
	ClampLimit    = clampLimit
	TooLarge      = tooLarge
	RoleOfFile    = roleOfFile
	TopRoles      = topRoles
	RolloutsProbe = rolloutsProbe
	OnlineKeys    = onlineKeys
)
