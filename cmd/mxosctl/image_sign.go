package main

// This file wires the bootable OCI image into publish and promote
// (--image): where the image goes (the server's registry, or DATA/oci for
// local publishing), which key signs it (the ed25519 release key) and the
// command that prints that key for client policies.

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/regclient"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// imageSigner is the first key of KEYDIR/ed25519.secret, the release key.
func imageSigner(signers []signature.Signer) (signature.Signer, error) {
	if len(signers) == 0 {
		return nil, userError("--image needs the ed25519 release key in --keys")
	}
	return signers[0], nil
}

// serverHost is host[:port] of an http(s) address: the registry name
// clients pull images from.
func serverHost(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return "", userError("cannot tell the registry host from %q: use --image-host", server)
	}
	return u.Host, nil
}

// remoteImageStep pushes to the server's registry with the API token.
func (r *remote) imageStep(cmd *cobra.Command, signers []signature.Signer, host string) (*release.ImageStep, error) {
	signer, err := imageSigner(signers)
	if err != nil {
		return nil, err
	}
	token := r.token
	if !cmd.Flags().Changed("token") {
		token = os.Getenv("MXOS_TOKEN")
	}
	rc, err := regclient.New(r.server, strings.TrimSpace(token))
	if err != nil {
		return nil, err
	}
	if tlsCfg, err := client.TLSConfig(r.caFile); err != nil {
		return nil, i18n.Errorf("--ca-file or MXOS_CA_FILE: %w", err)
	} else if tlsCfg != nil {
		rc.SetTransport(client.Transport(tlsCfg))
	}
	if err := rc.Ping(cmd.Context()); err != nil {
		if errors.Is(err, regclient.ErrNoRegistry) {
			return nil, i18n.Errorf("%w: start mxos-server with --registry, or publish without --image", err)
		}
		return nil, r.explain(err)
	}
	if host == "" {
		host = rc.Host()
	}
	return &release.ImageStep{Store: rc, Blobs: rc.GetBlob, Signer: signer, Host: host}, nil
}

// localImageStep writes into DATA/oci, the registry mxos-server serves.
func localImageStep(data, keys, host string) (*release.ImageStep, error) {
	signers, err := publish.LoadEd25519Signers(keys)
	if err != nil {
		return nil, i18n.Errorf("image signing key: %w", err)
	}
	signer, err := imageSigner(signers)
	if err != nil {
		return nil, err
	}
	if host == "" {
		if host, err = serverHost(envOr("MXOS_SERVER", defaultServer)); err != nil {
			return nil, err
		}
	}
	st, err := registry.Open(filepath.Join(data, "oci"), registry.Options{})
	if err != nil {
		return nil, err
	}
	blobs := func(_ context.Context, _ string, d digest.Digest) (io.ReadCloser, error) { return st.Blobs().Open(d) }
	return &release.ImageStep{Store: st, Blobs: blobs, Signer: signer, Host: host}, nil
}

// newImageKeyCmd prints the release key's public half as PEM, for
// policy.json (sigstoreSigned keyPath) and `cosign verify --key`.
func newImageKeyCmd() *cobra.Command {
	var keys string
	cmd := &cobra.Command{
		Use: "image-key --keys KEYDIR",
		Long: `Image-key prints the public release key that verifies image signatures, as
PEM, from KEYDIR/ed25519.pub: for policy.json (sigstoreSigned keyPath) and
` + "`cosign verify --key`.",
		Short: "Print the public key that verifies image signatures (PEM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keys == "" {
				return userError("--keys is required: the directory with the release key")
			}
			data, err := os.ReadFile(filepath.Join(keys, sign.Ed25519PublicFile))
			if err != nil {
				return err
			}
			pubs, err := publish.Ed25519PublicKeys(data)
			if err != nil {
				return i18n.Errorf("%s: %w", sign.Ed25519PublicFile, err)
			}
			if len(pubs) == 0 {
				return userError("%s holds no key", sign.Ed25519PublicFile)
			}
			pub := pubs[0] // the key publish --image signs with
			b, err := ocisig.PublicKeyPEM(pub)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&keys, "keys", envOr("MXOS_KEYS", ""), "directory with the release key (env MXOS_KEYS)")
	return cmd
}
