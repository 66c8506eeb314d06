package broker

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loalang/loalang/internal/atomicfile"
)

// Names of the files WriteMosquittoConfig writes into its directory.
const (
	MosquittoConfFile = "mosquitto.conf"
	// MosquittoDynsecFile holds the accounts: username, password hash and
	// the one client id each may use, in the format of Mosquitto's dynamic
	// security plugin.
	MosquittoDynsecFile = "dynamic-security.json"
	MosquittoACLFile    = "acl"
)

// DynsecPluginPaths lists where Mosquitto's dynamic security plugin is
// looked for, in order; the first that exists is used. Debian and Ubuntu
// install it under the multiarch library directory.
var DynsecPluginPaths = []string{
	"/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
	"/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
	"/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
	"/usr/lib/mosquitto_dynamic_security.so",
	"/usr/local/lib/mosquitto_dynamic_security.so",
}

// FindDynsecPlugin returns the first of DynsecPluginPaths that exists.
func FindDynsecPlugin() (string, error) {
	for _, p := range DynsecPluginPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (looked in %s)", ErrNoDynsecPlugin, strings.Join(DynsecPluginPaths, ", "))
}

// WriteMosquittoConfig writes mosquitto.conf, dynamic-security.json (0600)
// and acl (0600) into dir so that Mosquitto 2.x enforces rules as the
// embedded broker does. listenAddr is "host:port" with a non-zero port; an
// empty host listens on all addresses.
//
// Accounts are authenticated by the dynamic security plugin, the only part
// of Mosquitto 2.0 that can refuse a CONNECT whose client id is not the
// account's own (with a password_file any valid login may take any client
// id, and so take over another identity's session). Topic access stays in
// the acl file, which Mosquitto consults before any plugin.
//
// Each file is replaced atomically. A running Mosquitto reloads the acl file
// on SIGHUP, but the plugin reads its accounts only at start: after adding,
// removing or re-keying an account, restart Mosquitto.
func WriteMosquittoConfig(dir string, rules Rules, listenAddr string) error {
	if err := rules.Validate(); err != nil {
		return fmt.Errorf("write mosquitto config: %w", err)
	}
	plugin, err := FindDynsecPlugin()
	if err != nil {
		return fmt.Errorf("write mosquitto config: %w", err)
	}
	dynsec, err := mosquittoDynsec(rules)
	if err != nil {
		return fmt.Errorf("write mosquitto config: %w", err)
	}
	host, portStr, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return fmt.Errorf("write mosquitto config: listen address %q: %w", listenAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("write mosquitto config: listen port %q: %w", portStr, ErrInvalidRules)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("write mosquitto config: %w", err)
	}
	if strings.ContainsAny(abs+host, "\r\n ") {
		return fmt.Errorf("write mosquitto config: path or host %q has whitespace: %w", abs, ErrInvalidRules)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("write mosquitto config: %w", err)
	}

	if err := writeFileAtomic(filepath.Join(abs, MosquittoDynsecFile), dynsec); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(abs, MosquittoACLFile), []byte(mosquittoACL(rules))); err != nil {
		return err
	}
	conf := mosquittoConf(abs, plugin, host, port)
	if err := writeFileAtomic(filepath.Join(abs, MosquittoConfFile), []byte(conf)); err != nil {
		return err
	}
	return nil
}

// dynsecClient is one client of the dynamic security plugin's JSON file
// (Mosquitto 2.0 plugins/dynamic-security): the same PBKDF2-SHA512 salt,
// key and iteration count as the "$7$" hash, split into fields.
type dynsecClient struct {
	Username   string     `json:"username"`
	ClientID   string     `json:"clientid"`
	Password   string     `json:"password"`
	Salt       string     `json:"salt"`
	Iterations int        `json:"iterations"`
	Roles      []struct{} `json:"roles"`
}

// dynsecFile is the plugin's whole configuration. It grants nothing itself:
// no roles, and the default ACL access denies, so that topic access comes
// from the acl file alone.
type dynsecFile struct {
	DefaultACLAccess map[string]bool `json:"defaultACLAccess"`
	Clients          []dynsecClient  `json:"clients"`
	Groups           []struct{}      `json:"groups"`
	Roles            []struct{}      `json:"roles"`
}

// dynsecSaltLen and dynsecKeyLen are the sizes the plugin accepts.
const (
	dynsecSaltLen = 12
	dynsecKeyLen  = 64
)

// mosquittoDynsec renders the accounts for the dynamic security plugin.
func mosquittoDynsec(r Rules) ([]byte, error) {
	f := dynsecFile{
		DefaultACLAccess: map[string]bool{"publishClientSend": false, "publishClientReceive": false, "subscribe": false, "unsubscribe": true},
		Clients:          []dynsecClient{},
		Groups:           []struct{}{},
		Roles:            []struct{}{},
	}
	for _, a := range r.Accounts {
		iter, salt, key, err := parseHash(a.PasswordHash)
		if err != nil {
			return nil, fmt.Errorf("account %q: %w", a.Username, err)
		}
		if len(salt) != dynsecSaltLen || len(key) != dynsecKeyLen {
			return nil, fmt.Errorf("account %q: salt of %d bytes, key of %d; Mosquitto needs %d and %d: %w",
				a.Username, len(salt), len(key), dynsecSaltLen, dynsecKeyLen, ErrInvalidRules)
		}
		f.Clients = append(f.Clients, dynsecClient{
			Username:   a.Username,
			ClientID:   a.clientID(),
			Password:   base64.StdEncoding.EncodeToString(key),
			Salt:       base64.StdEncoding.EncodeToString(salt),
			Iterations: iter,
			Roles:      []struct{}{},
		})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode dynamic security file: %w", err)
	}
	return append(b, '\n'), nil
}

// mosquittoACL renders Rules.Grants as Mosquitto "user"/"topic" blocks. No
// topic lines precede the first user line, so anonymous clients get nothing.
func mosquittoACL(r Rules) string {
	var b strings.Builder
	b.WriteString("# Generated by loalangd from broker.Rules; changes are overwritten.\n")
	for _, a := range r.Accounts {
		fmt.Fprintf(&b, "\n# %s\nuser %s\n", a.Role, a.Username)
		for _, g := range r.Grants(a) {
			fmt.Fprintf(&b, "topic %s %s\n", g.Access.mosquittoWord(), g.Filter)
		}
	}
	return b.String()
}

// mosquittoConf renders the broker configuration. Security settings are global
// (per_listener_settings false) so a later listener cannot weaken them.
func mosquittoConf(dir, plugin, host string, port int) string {
	var b strings.Builder
	b.WriteString("# Generated by loalangd; changes are overwritten.\n")
	b.WriteString("per_listener_settings false\n")
	b.WriteString("allow_anonymous false\n")
	fmt.Fprintf(&b, "plugin %s\n", plugin)
	fmt.Fprintf(&b, "plugin_opt_config_file %s\n", filepath.Join(dir, MosquittoDynsecFile))
	fmt.Fprintf(&b, "acl_file %s\n", filepath.Join(dir, MosquittoACLFile))
	b.WriteString("persistence false\n")
	// Mosquitto leaves Nagle's algorithm on by default: a small message
	// queued behind an unacknowledged one then waits for the peer's
	// delayed ACK (up to 40 ms on Linux), too long for 20 ms audio frames.
	b.WriteString("set_tcp_nodelay true\n")
	b.WriteString("sys_interval 0\n")
	fmt.Fprintf(&b, "max_packet_size %d\n", MaxPacketSize)
	fmt.Fprintf(&b, "max_queued_messages %d\n", MaxQueuedMessages)
	b.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n")
	// When started as root Mosquitto drops to this user before reading the
	// 0600 password and ACL files, so it must be their owner.
	if u, err := user.Current(); err == nil && u.Username != "" && !strings.ContainsAny(u.Username, " \r\n") {
		fmt.Fprintf(&b, "user %s\n", u.Username)
	}
	if host == "" {
		fmt.Fprintf(&b, "listener %d\n", port)
	} else {
		fmt.Fprintf(&b, "listener %d %s\n", port, host)
	}
	return b.String()
}

// writeFileAtomic writes data to path with mode 0600, so Mosquitto reading
// it on SIGHUP sees either the old or the new file.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.WriteBytes(path, 0o600, data)
}
