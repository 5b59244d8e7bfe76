package gatewaycmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/cliout"
	"github.com/kiln-dev/kiln/pkg/exitcode"
	"github.com/kiln-dev/kiln/pkg/pki"
	"github.com/kiln-dev/kiln/pkg/proxy/cluster"
)

type genCertOptions struct {
	days  int
	force bool
}

// newGenCertCommand is `kong hybrid gen_cert`: a self-signed
// certificate for hybrid mode's shared mTLS.
func newGenCertCommand(streams Streams) *cobra.Command {
	o := &genCertOptions{}
	cmd := &cobra.Command{
		Use:   "gen-cert [CERT_FILE KEY_FILE]",
		Short: "Generate the shared certificate of a hybrid-mode cluster (like kong hybrid gen_cert)",
		Long: `Writes a self-signed certificate with CN=kong_clustering and its private key
(default cluster.crt and cluster.key), for --cluster-cert / --cluster-cert-key
on the control plane and every data plane in --cluster-mtls shared mode.
Existing files are not overwritten unless --force is given.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return exitcode.Usagef("gen-cert takes no argument or both CERT_FILE and KEY_FILE (got %d)", len(args))
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			certFile, keyFile := "cluster.crt", "cluster.key"
			if len(args) == 2 {
				certFile, keyFile = args[0], args[1]
			}
			return genCert(streams, o, certFile, keyFile)
		},
	}
	cmd.Flags().IntVar(&o.days, "days", 3*365, "validity of the certificate in days")
	cmd.Flags().BoolVar(&o.force, "force", false, "overwrite existing files")
	return cmd
}

func genCert(streams Streams, o *genCertOptions, certFile, keyFile string) error {
	if o.days < 1 {
		return exitcode.Usagef("--days must be at least 1 (got %d)", o.days)
	}
	if !o.force {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Stat(f); err == nil {
				return exitcode.With(exitcode.InvalidInput, fmt.Errorf("%s already exists; remove it or pass --force to overwrite", f))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return exitcode.With(exitcode.InvalidInput, fmt.Errorf("check %s: %w", f, err))
			}
		}
	}
	start := time.Now()
	kp, err := pki.SelfSigned(pki.Options{
		CommonName: cluster.SharedServerName, Hosts: []string{cluster.SharedServerName},
		Usage: pki.ServerAuth | pki.ClientAuth, Validity: time.Duration(o.days) * 24 * time.Hour,
	})
	if err == nil {
		err = kp.WriteFiles(certFile, keyFile)
	}
	cliout.Progress(streams.Err, "cluster certificate", certFile+" + "+keyFile+" (CN="+cluster.SharedServerName+", "+fmt.Sprint(o.days)+" days)", time.Since(start), err)
	if err != nil {
		return exitcode.With(exitcode.InvalidInput, err)
	}
	return nil
}
