// Package handoff hands generated credentials to the people who need them,
// encrypted with age (https://age-encryption.org): one credentials file for
// the operator, readable only with the operator's key, and a welcome note
// per user, readable only with that user's key. Recipients are age public
// keys (age1..., or post-quantum age1pq1...) and SSH public keys
// (ssh-ed25519, ssh-rsa), the same ones the age command accepts.
//
// Every file is written through safefile: mode 0600, complete or absent,
// never replacing an existing file unless asked to.
package handoff

import (
	"bufio"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"golang.org/x/crypto/ssh"
)

const keygenHint = "generate a key with: age-keygen -o key.txt (its public key, age1..., is printed and kept in the file)"

// ParseRecipient parses one public key: "age1..." (X25519), "age1pq1..."
// (post-quantum, needs age 1.3 or later to decrypt), "ssh-ed25519 ..." or
// "ssh-rsa ..." (2048 bits or more; a trailing comment is fine). age plugin
// recipients (age1yubikey1... and the like) are refused: encrypting to them
// needs the plugin installed here.
//
// Errors never quote the input: a private key pasted by mistake must not end
// up in a terminal or a log.
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return nil, errors.New("empty recipient: give an age public key (age1...) or an SSH public key; " + keygenHint)
	case strings.HasPrefix(s, "AGE-SECRET-KEY-"), strings.HasPrefix(s, "AGE-PLUGIN-"):
		return nil, errors.New("this is an age private key (an identity), not a recipient: keep it secret, and give its public key instead, which age-keygen -y key.txt prints")
	case strings.HasPrefix(s, "-----BEGIN"):
		return nil, errors.New("this is a private key, not a public key: keep it secret, and give the public key instead (for SSH, the line in the .pub file)")
	case strings.HasPrefix(s, "age1pq1"):
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			// age's error quotes the input; keep to the promise above.
			return nil, errors.New("malformed post-quantum age recipient: check it was copied whole")
		}
		return r, nil
	case strings.HasPrefix(s, "age1") && strings.Count(s, "1") > 1:
		// An X25519 key is "age1" and bech32 data, whose alphabet has no
		// '1', so a second '1' marks "age1<plugin>1..." (or "age1tag1...").
		return nil, errors.New("age plugin recipients (age1<plugin>1...) are not supported, since encrypting to them needs the plugin installed here: give an age1... key from age-keygen, or an SSH public key")
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			// age's error quotes the input; keep to the promise above.
			return nil, errors.New("malformed age recipient: check it was copied whole (age1 and 58 more characters)")
		}
		return r, nil
	case strings.HasPrefix(s, "ssh-"), strings.HasPrefix(s, "ecdsa-"), strings.HasPrefix(s, "sk-"):
		return parseSSH(s)
	default:
		return nil, errors.New("unknown recipient type: want an age public key (age1...) or an SSH public key (ssh-ed25519 ... or ssh-rsa ...); " + keygenHint)
	}
}

func parseSSH(s string) (age.Recipient, error) {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("malformed SSH public key (check it was copied whole, on one line): %w", err)
	}
	switch pk.Type() {
	case ssh.KeyAlgoED25519:
		r, err := agessh.NewEd25519Recipient(pk)
		if err != nil {
			return nil, fmt.Errorf("unusable ssh-ed25519 key: %w", err)
		}
		return r, nil
	case ssh.KeyAlgoRSA:
		if ck, ok := pk.(ssh.CryptoPublicKey); ok {
			if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
				return nil, fmt.Errorf("ssh-rsa key has %d bits, and age needs at least 2048: create a new key with: ssh-keygen -t ed25519", rk.N.BitLen())
			}
		}
		r, err := agessh.NewRSARecipient(pk)
		if err != nil {
			return nil, fmt.Errorf("unusable ssh-rsa key: %w", err)
		}
		return r, nil
	default:
		return nil, fmt.Errorf("unsupported SSH key type %s: age encrypts to ssh-ed25519 and ssh-rsa keys only; create one with: ssh-keygen -t ed25519, or %s", pk.Type(), keygenHint)
	}
}

const (
	recipientsFileLimit = 16 << 20 // as age: a recipients file is small
	lineLimit           = 8 << 10  // as age and sshd
)

// ReadRecipientsFile reads a recipients file as age -R does: one public key
// per line, blank lines and lines starting with '#' ignored. Errors name the
// file and line ("keys.txt:3: ...") and never quote the line.
func ReadRecipientsFile(path string) ([]age.Recipient, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open recipients file: %w", err)
	}
	defer f.Close()
	lr := &io.LimitedReader{R: f, N: recipientsFileLimit + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), lineLimit+2) // +2: room for "\r\n"
	var rcpts []age.Recipient
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text()) // files edited on Windows end lines in \r
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("%s:%d: not valid UTF-8: is this a recipients file?", path, n)
		}
		r, err := ParseRecipient(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		rcpts = append(rcpts, r)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line is longer than %d bytes: is this a recipients file?", path, n+1, lineLimit)
		}
		return nil, fmt.Errorf("read recipients file %s: %w", path, err)
	}
	if lr.N == 0 {
		return nil, fmt.Errorf("%s: recipients file is larger than %d MiB: is this a recipients file?", path, recipientsFileLimit>>20)
	}
	if len(rcpts) == 0 {
		return nil, fmt.Errorf("%s: no recipients found: add one public key per line (age-keygen -y key.txt prints yours)", path)
	}
	return rcpts, nil
}
