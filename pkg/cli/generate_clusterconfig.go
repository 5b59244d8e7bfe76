package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/pkg/spec"
	"github.com/kiln-dev/kiln/pkg/sshkey"
)

func newGenerateClusterConfigCommand(streams Streams) *cobra.Command {
	var version, sshKey, keyOut string
	cmd := &cobra.Command{
		Use:   "clusterconfig NAME",
		Short: "Print a complete starting ClusterSpec for a bare-metal cluster",
		Long: `clusterconfig prints a ClusterSpec with a Cluster (one control-plane node,
one worker group), its TinkerbellDatacenterConfig and a
TinkerbellMachineConfig per node group. Replace the three <...> addresses,
then check it with kiln validate.

The nodes' ec2-user gets the SSH public key from --ssh-key, else the first of
~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub; if there is none, a new
ed25519 key pair is created and its private key written to --ssh-key-out.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			name := args[0]
			if keyOut == "" {
				keyOut = name + ".ssh-key"
			}
			key, err := authorizedKey(streams, sshKey, keyOut, name)
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			out, err := spec.GenerateClusterConfig(spec.GenerateOptions{Name: name, KubernetesVersion: version, SSHAuthorizedKey: key})
			if err != nil {
				return usageError("%v", err)
			}
			_, err = streams.Out.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&version, "kubernetes-version", spec.DefaultKubernetesVersion, "Kubernetes minor version (env KILN_KUBERNETES_VERSION)")
	cmd.Flags().StringVar(&sshKey, "ssh-key", "", "SSH public key file for the nodes' ec2-user (env KILN_SSH_KEY)")
	cmd.Flags().StringVar(&keyOut, "ssh-key-out", "", "where to write a generated private key when no public key is found (default NAME.ssh-key; env KILN_SSH_KEY_OUT)")
	return cmd
}

// authorizedKey returns the public key line for the generated spec.
func authorizedKey(streams Streams, path, keyOut, name string) (string, error) {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read --ssh-key: %w", err)
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey(data); err != nil {
			return "", fmt.Errorf("--ssh-key %s is not an SSH public key (e.g. ~/.ssh/id_ed25519.pub): %w", path, err)
		}
		return string(data), nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		for _, f := range []string{"id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"} {
			data, err := os.ReadFile(filepath.Join(home, ".ssh", f))
			if err != nil {
				continue
			}
			if _, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
				fmt.Fprintf(streams.Err, "using SSH public key %s\n", filepath.Join(home, ".ssh", f))
				return string(data), nil
			}
		}
	}
	return generateKeyPair(streams, keyOut, name)
}

// generateKeyPair creates an ed25519 key pair, writes the private key to
// keyOut (never overwriting a file) and returns the public key line.
func generateKeyPair(streams Streams, keyOut, name string) (string, error) {
	kp, err := sshkey.Generate(name)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(keyOut, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("no SSH public key found and %s already exists: pass --ssh-key FILE.pub or --ssh-key-out NEWFILE", keyOut)
	}
	if err != nil {
		return "", fmt.Errorf("write SSH private key: %w", err)
	}
	if _, err := f.Write(kp.PrivatePEM); err != nil {
		f.Close()
		return "", fmt.Errorf("write SSH private key %s: %w", keyOut, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write SSH private key %s: %w", keyOut, err)
	}
	fmt.Fprintf(streams.Err, "no SSH public key found: generated a key pair, private key in %s (log in with ssh -i %s ec2-user@<node>)\n", keyOut, keyOut)
	return kp.AuthorizedKey, nil
}
