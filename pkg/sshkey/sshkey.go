// Package sshkey generates the ed25519 SSH key pairs kiln puts into a
// ClusterSpec's sshAuthorizedKeys when the operator has none.
package sshkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KeyPair is a generated SSH key pair.
type KeyPair struct {
	// PrivatePEM is the private key in OpenSSH format (what ssh -i reads).
	PrivatePEM []byte
	// AuthorizedKey is the public key as one authorized_keys line, without
	// a trailing newline.
	AuthorizedKey string
}

// Generate creates an ed25519 key pair for name: the private key carries the
// comment "kiln NAME", the authorized-key line ends in "kiln-NAME".
func Generate(name string) (KeyPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate SSH key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "kiln "+name)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encode SSH key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encode SSH public key: %w", err)
	}
	return KeyPair{
		PrivatePEM:    pem.EncodeToMemory(block),
		AuthorizedKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " kiln-" + name,
	}, nil
}
