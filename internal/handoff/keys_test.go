package handoff_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"golang.org/x/crypto/ssh"
)

// key is a test key pair: the public key as a user would write it in a
// roster or recipients file, and the identity that decrypts.
type key struct {
	name     string
	public   string
	identity age.Identity
	// private is the identity as the age command reads it with -i.
	private []byte
}

func x25519Key(t testing.TB) key {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return key{"x25519", id.Recipient().String(), id, []byte(id.String() + "\n")}
}

func ed25519Key(t testing.TB) key {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := agessh.NewEd25519Identity(priv)
	if err != nil {
		t.Fatal(err)
	}
	return sshKey(t, "ssh-ed25519", pub, priv, id)
}

// rsaKey is generated once: 2048-bit RSA key generation takes a while.
var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func rsa2048Key(t testing.TB) key {
	t.Helper()
	priv, err := rsaKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := agessh.NewRSAIdentity(priv)
	if err != nil {
		t.Fatal(err)
	}
	return sshKey(t, "ssh-rsa", &priv.PublicKey, priv, id)
}

func sshKey(t testing.TB, name string, pub, priv any, id age.Identity) key {
	t.Helper()
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test key")
	if err != nil {
		t.Fatal(err)
	}
	public := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " user@host"
	return key{name, public, id, pem.EncodeToMemory(block)}
}
