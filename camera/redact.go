package camera

import (
	"net/url"
	"regexp"
	"strings"
)

// secretQueryKey matches query parameters that cheap cameras use to carry
// credentials in the URL (e.g. "?user=admin&password=x").
var secretQueryKey = regexp.MustCompile(`(?i)^(user|usr|username|login|pass|passwd|password|pwd|token|auth|key|secret|sig|signature)$`)

// RedactURL returns raw with any user information and credential-like query
// values replaced by "***", so camera URLs can be logged and shown in API
// responses without leaking secrets (DESIGN.md, security model).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparseable URL]"
	}
	if u.User != nil {
		u.User = url.User("***")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if secretQueryKey.MatchString(k) {
				q[k] = []string{"***"}
			}
		}
		u.RawQuery = q.Encode()
	}
	return strings.Replace(u.String(), "%2A%2A%2A", "***", -1)
}

// secretsOf lists the substrings of raw that must never appear in logs or
// errors: the password, the user name and their percent-encoded forms.
func secretsOf(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if len(s) >= 3 { // shorter strings would scrub innocent text
			out = append(out, s, url.QueryEscape(s), url.PathEscape(s))
		}
	}
	if u.User != nil {
		add(u.User.Username())
		if p, ok := u.User.Password(); ok {
			add(p)
		}
	}
	for k, vs := range u.Query() {
		if secretQueryKey.MatchString(k) {
			for _, v := range vs {
				add(v)
			}
		}
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
