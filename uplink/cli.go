package uplink

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Main runs `loalang uplink <keygen|sign> ...` and returns the error to
// print; cmd/loalang only forwards to it.
func Main(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: loalang uplink keygen|sign [flags]")
	}
	switch args[0] {
	case "keygen":
		fs := flag.NewFlagSet("uplink keygen", flag.ContinueOnError)
		fs.SetOutput(stderr)
		out := fs.String("out", "", "private key file to create (PKCS #8 PEM, mode 0600)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("uplink keygen: -out is required")
		}
		pub, err := Keygen(*out)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, pub)
		return nil
	case "sign":
		return signCmd(args[1:], stdout, stderr)
	}
	return fmt.Errorf("uplink: unknown subcommand %q (keygen, sign)", args[0])
}

func signCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("uplink sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	key := fs.String("key", "", "private key file (from uplink keygen)")
	level := fs.String("level", LevelProvince, "sender level: province or commune")
	sender := fs.String("sender", "", "sender id (the province or commune id)")
	province := fs.String("province", "", "target province")
	commune := fs.String("commune", "", "target commune (empty: every commune of the province)")
	villages := fs.String("villages", "", "comma-separated target villages (empty: all)")
	zones := fs.String("zones", "", "comma-separated target zones (empty: all)")
	urgency := fs.String("urgency", UrgencyRoutine, "emergency or routine")
	text := fs.String("text", "", "text to speak")
	mediaURL := fs.String("media-url", "", "URL the villages fetch the media from")
	mediaFile := fs.String("media-file", "", "local copy of the media, for its sha256 and size")
	ttl := fs.Duration("ttl", time.Hour, "how long the command is valid")
	id := fs.String("id", "", "command id (default: random)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" || *sender == "" || *province == "" {
		return errors.New("uplink sign: -key, -sender and -province are required")
	}
	priv, err := ReadPrivateKey(*key)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	c := Command{V: 1, ID: *id, Nonce: NewNonce(), Level: *level, Sender: *sender, Issued: now, Expires: now.Add(*ttl),
		Target: Target{Province: *province, Commune: *commune, Villages: split(*villages), Zones: split(*zones)}, Urgency: *urgency, Text: *text}
	if c.ID == "" {
		c.ID = "cmd-" + c.Nonce[:12]
	}
	if *mediaURL != "" {
		if *mediaFile == "" {
			return errors.New("uplink sign: -media-url needs -media-file for the hash")
		}
		raw, err := os.ReadFile(*mediaFile)
		if err != nil {
			return fmt.Errorf("uplink sign: %w", err)
		}
		sum := sha256.Sum256(raw)
		c.Media = &MediaRef{URL: *mediaURL, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(raw))}
	}
	env, err := Sign(c, priv)
	if err != nil {
		return fmt.Errorf("uplink sign: %w", err)
	}
	fmt.Fprintln(stdout, string(env))
	return nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
