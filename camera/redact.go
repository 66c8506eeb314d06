package camera

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Placeholder stands for a secret value in a URL as stored and shown:
// "rtsp://cam/live?user=***&pw=***". Sent back in a URL, it means "keep the
// stored value".
const Placeholder = "***"

// credKey matches the keys under which cameras take credentials in the URL's
// query or path: "?user=admin&password=x", "?usr=admin&pwd=x" (Foscam),
// "?loginuse=admin&loginpas=x", "/user=admin_password=x_channel=1"
// (Xiongmai/XMEye firmware, common among the Chinese and Vietnamese NVR
// brands), "?pw=x", "?cred=x", "?token=x", "?sig=x", matched case-
// insensitively, as whole keys or by the fragments pass, pwd, token, secret
// and cred anywhere in the key.
var credKey = regexp.MustCompile(`(?i)^(user|usr|username|user_?name|login|loginuse|loginpas|account|uid|pass|passwd|password|pwd|pw|psw|cred|creds|credential|credentials|token|access_?token|auth|authkey|auth_?key|key|api_?key|apikey|secret|sig|signature)$|pass|pwd|token|secret|cred`)

// pathToken finds "key=" in a path: the key follows the path's start, '/',
// '&', ';' or '_' ("user=admin_password=x_channel=1").
var pathToken = regexp.MustCompile(`(?:^|[/&;_])([A-Za-z][A-Za-z0-9]*)=`)

// Credentials are the secret parts of a camera URL, kept apart from it: the
// user information and every credential-like value of the path and query,
// in the order of their placeholders. They are written by the admin (or
// read from the config file), stored, and put back into the URL only when
// the relay dials the camera; no API response, log line or audit entry
// holds them.
type Credentials struct {
	Username string  `json:"username,omitempty"`
	Password string  `json:"password,omitempty"`
	Params   []Param `json:"params,omitempty"`
}

// Param is one credential cut out of a URL's path or query. An empty Value
// marks a placeholder the admin sent back ("keep the stored value").
type Param struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// IsZero reports whether c holds no secret at all.
func (c Credentials) IsZero() bool {
	if c.Username != "" || c.Password != "" {
		return false
	}
	for _, p := range c.Params {
		if p.Value != "" {
			return false
		}
	}
	return true
}

// span is one credential value in a URL string: s[start:end] is the value
// of key.
type span struct {
	key        string
	start, end int
}

// secretSpans finds the credential values in s, a URL without user
// information, in order: first in the path, then in the query.
func secretSpans(s string) []span {
	// The path starts after "scheme://host".
	i := strings.Index(s, "://")
	if i < 0 {
		return nil
	}
	pathStart := i + 3
	if j := strings.IndexAny(s[pathStart:], "/?#"); j >= 0 {
		pathStart += j
	} else {
		return nil
	}
	end := len(s)
	if j := strings.IndexByte(s, '#'); j >= 0 {
		end = j
	}
	qStart := end
	if j := strings.IndexByte(s[pathStart:end], '?'); j >= 0 {
		qStart = pathStart + j
	}
	var out []span
	path := s[pathStart:qStart]
	ms := pathToken.FindAllStringSubmatchIndex(path, -1)
	for n, m := range ms {
		key := path[m[2]:m[3]]
		vs := m[1]
		ve := len(path)
		if n+1 < len(ms) {
			ve = ms[n+1][0] // the next token's separator
		}
		if k := strings.IndexByte(path[vs:ve], '/'); k >= 0 {
			ve = vs + k
		}
		if credKey.MatchString(key) && ve > vs {
			out = append(out, span{key, pathStart + vs, pathStart + ve})
		}
	}
	if qStart < end {
		pos := qStart + 1
		for _, kv := range strings.FieldsFunc(s[qStart+1:end], func(r rune) bool { return r == '&' || r == ';' }) {
			at := strings.Index(s[pos:end], kv) + pos
			pos = at + len(kv)
			k, v, ok := strings.Cut(kv, "=")
			if !ok || v == "" {
				continue
			}
			if key, err := url.QueryUnescape(k); err == nil && credKey.MatchString(key) {
				out = append(out, span{k, at + len(k) + 1, at + len(kv)})
			}
		}
	}
	return out
}

// errBadURL is the only error SplitURL and Join return about the URL
// itself: the URL may carry credentials and is never echoed.
var errBadURL = errors.New("not a valid URL")

// SplitURL cuts the credentials out of raw: the user information, and every
// credential-like value in the path or query (replaced by Placeholder). A
// value that already is Placeholder becomes a Param with an empty Value, to
// be filled from the stored credentials by Fill. A user information of
// Placeholder likewise leaves Username and Password empty.
func SplitURL(raw string) (clean string, c Credentials, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", Credentials{}, errBadURL
	}
	if u.User != nil {
		if name := u.User.Username(); name != Placeholder {
			c.Username = name
			c.Password, _ = u.User.Password()
		}
		u.User = nil
	}
	s := u.String()
	spans := secretSpans(s)
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		v := s[sp.start:sp.end]
		if v == Placeholder {
			v = ""
		}
		c.Params = append(c.Params, Param{Key: sp.key, Value: v})
		b.WriteString(s[last:sp.start])
		b.WriteString(Placeholder)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String(), c, nil
}

// Fill completes the placeholders the admin sent back (Params with an empty
// Value) with the values of stored, matched by key in order. A placeholder
// with no stored value is an error naming its key.
func (c Credentials) Fill(stored Credentials) (Credentials, error) {
	used := make([]bool, len(stored.Params))
	out := c
	out.Params = append([]Param(nil), c.Params...)
	for i, p := range out.Params {
		if p.Value != "" {
			continue
		}
		found := false
		for j, sp := range stored.Params {
			if !used[j] && strings.EqualFold(sp.Key, p.Key) && sp.Value != "" {
				out.Params[i].Value, used[j], found = sp.Value, true, true
				break
			}
		}
		if !found {
			return Credentials{}, fmt.Errorf("%s=%s but no stored value for %s", p.Key, Placeholder, p.Key)
		}
	}
	return out, nil
}

// Join puts c back into clean, the URL as stored: the form the relay dials.
func (c Credentials) Join(clean string) (string, error) {
	spans := secretSpans(clean)
	var b strings.Builder
	last, next := 0, 0
	for _, sp := range spans {
		if clean[sp.start:sp.end] != Placeholder {
			continue
		}
		if next >= len(c.Params) || !strings.EqualFold(c.Params[next].Key, sp.key) || c.Params[next].Value == "" {
			return "", fmt.Errorf("%s=%s: no stored value", sp.key, Placeholder)
		}
		b.WriteString(clean[last:sp.start])
		b.WriteString(c.Params[next].Value)
		last = sp.end
		next++
	}
	b.WriteString(clean[last:])
	if c.Username == "" && c.Password == "" {
		return b.String(), nil
	}
	u, err := url.Parse(b.String())
	if err != nil {
		return "", errBadURL
	}
	if c.Password != "" {
		u.User = url.UserPassword(c.Username, c.Password)
	} else {
		u.User = url.User(c.Username)
	}
	return u.String(), nil
}

// Redacted is clean as shown to admins: with "***@" when credentials
// carry user information, so that an admin sees a secret is set.
func (c Credentials) Redacted(clean string) string {
	if c.Username == "" && c.Password == "" {
		return clean
	}
	if i := strings.Index(clean, "://"); i >= 0 {
		return clean[:i+3] + Placeholder + "@" + clean[i+3:]
	}
	return clean
}

// RedactURL returns raw with its user information and every credential-like
// value of its path and query replaced by "***", so camera URLs can be
// logged and shown in API responses without leaking secrets (DESIGN.md,
// security model).
func RedactURL(raw string) string {
	clean, c, err := SplitURL(raw)
	if err != nil {
		return "[unparseable URL]"
	}
	return c.Redacted(clean)
}

// secretsOf lists the substrings of raw that must never appear in logs or
// errors: the user name, the password, the credential values, and their
// percent-encoded forms.
func secretsOf(raw string) []string {
	_, c, err := SplitURL(raw)
	if err != nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if len(s) >= 3 { // shorter strings would scrub innocent text
			out = append(out, s, url.QueryEscape(s), url.PathEscape(s))
			if u, err := url.QueryUnescape(s); err == nil && u != s {
				out = append(out, u)
			}
		}
	}
	add(c.Username)
	add(c.Password)
	for _, p := range c.Params {
		add(p.Value)
	}
	return out
}

// scrub removes the secrets of raw from msg.
func scrub(msg, raw string) string {
	for _, s := range secretsOf(raw) {
		msg = strings.ReplaceAll(msg, s, "***")
	}
	return msg
}
