package sshkey

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestGenerate(t *testing.T) {
	for _, name := range []string{"lab", "prod-1"} {
		t.Run(name, func(t *testing.T) {
			kp, err := Generate(name)
			if err != nil {
				t.Fatal(err)
			}
			pub, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(kp.AuthorizedKey))
			if err != nil || len(rest) != 0 || strings.Contains(kp.AuthorizedKey, "\n") {
				t.Fatalf("authorized key %q: %v (rest %q)", kp.AuthorizedKey, err, rest)
			}
			if comment != "kiln-"+name || pub.Type() != ssh.KeyAlgoED25519 {
				t.Errorf("comment %q type %q", comment, pub.Type())
			}
			signer, err := ssh.ParsePrivateKey(kp.PrivatePEM)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(signer.PublicKey().Marshal(), pub.Marshal()) {
				t.Error("private key does not match the authorized key")
			}
			other, err := Generate(name)
			if err != nil {
				t.Fatal(err)
			}
			if other.AuthorizedKey == kp.AuthorizedKey {
				t.Error("two generated keys are equal")
			}
		})
	}
}
