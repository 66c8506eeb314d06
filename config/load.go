package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is a configuration error pinned to a key.
type Error struct {
	// File is the config file, or "environment" for LOALANG_* variables.
	File string
	// Key is the dotted path, e.g. "mqtt.url" or "devices[3].zones".
	Key    string
	Reason string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Reason)
}

// Load reads path over the defaults, applies LOALANG_* variables from
// getenv and validates the result. Flags are applied by the caller, which
// must call Validate again afterwards.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, &Error{File: path, Reason: err.Error()}
		}
		if err := decodeStrict(path, data, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		var ce *Error
		if errors.As(err, &ce) && ce.File == "" {
			ce.File = path
		}
		return cfg, err
	}
	return cfg, nil
}

var lineRE = regexp.MustCompile(`line (\d+): (.*)`)

// decodeStrict decodes YAML rejecting unknown keys, and turns yaml.v3's
// line-numbered errors into errors naming the key.
func decodeStrict(file string, data []byte, cfg *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return &Error{File: file, Reason: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	if err == nil || errors.Is(err, io.EOF) { // an empty file keeps the defaults
		return nil
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		m := lineRE.FindStringSubmatch(te.Errors[0])
		if m != nil {
			line, _ := strconv.Atoi(m[1])
			return &Error{File: file, Key: keyAt(&root, line), Reason: friendly(m[2])}
		}
		return &Error{File: file, Reason: te.Errors[0]}
	}
	return &Error{File: file, Reason: strings.TrimPrefix(err.Error(), "yaml: ")}
}

var (
	unknownRE = regexp.MustCompile(`^field (\S+) not found in type`)
	typeRE    = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.+)$")
)

// friendly rewrites yaml.v3 reasons in the words of the config file.
func friendly(reason string) string {
	if m := unknownRE.FindStringSubmatch(reason); m != nil {
		return fmt.Sprintf("unknown key %q", m[1])
	}
	if m := typeRE.FindStringSubmatch(reason); m != nil {
		want := m[3]
		switch {
		case want == "time.Duration":
			want = "a duration such as 500ms or 2s"
		case strings.HasPrefix(want, "[]"):
			want = "a list"
		case strings.HasPrefix(want, "map["), strings.HasPrefix(want, "config."):
			want = "a mapping"
		case want == "float64":
			want = "a number"
		case strings.HasPrefix(want, "int"):
			want = "an integer"
		case want == "bool" || want == "*bool":
			want = "true or false"
		}
		return fmt.Sprintf("%q is a %s, want %s", m[2], m[1], want)
	}
	return reason
}

// keyAt returns the dotted path of the mapping key or value on a line.
func keyAt(n *yaml.Node, line int) string {
	var best string
	var walk func(n *yaml.Node, path string) bool
	walk = func(n *yaml.Node, path string) bool {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if walk(c, path) {
					return true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if k.Line == line {
					best = p
					if v.Line != line || v.Kind == yaml.ScalarNode {
						return true
					}
				}
				if walk(v, p) {
					return true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if c.Line == line && c.Kind == yaml.ScalarNode {
					best = p
					return true
				}
				if walk(c, p) {
					return true
				}
			}
		}
		return false
	}
	walk(n, "")
	return best
}

// applyEnv sets every scalar key from its LOALANG_* variable, if set.
func applyEnv(cfg *Config, getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	return envWalk(reflect.ValueOf(cfg).Elem(), "", getenv)
}

func envWalk(v reflect.Value, path string, getenv func(string) string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if path != "" {
			key = path + "." + tag
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := envWalk(fv, key, getenv); err != nil {
				return err
			}
			continue
		}
		name := "LOALANG_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		raw := getenv(name)
		if raw == "" {
			continue
		}
		if err := setScalar(fv, raw); err != nil {
			return &Error{File: "environment", Key: name, Reason: err.Error()}
		}
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

func setScalar(v reflect.Value, raw string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 500ms or 2s", raw)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		v.SetFloat(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		v.Set(reflect.ValueOf(strings.Split(raw, ",")))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
