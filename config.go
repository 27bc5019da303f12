package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Config is the daemon's configuration: config.yaml in the data folder, with
// OXITRAFFIC_* environment variables winning over it.
type Config struct {
	SocketAddress    string         `yaml:"socket_address"`
	ResponseFilename string         `yaml:"response_filename"`
	TrackedBaseURL   string         `yaml:"tracked_base_url"`
	DB               DBConfig       `yaml:"db"`
	UTCOffset        UTCOffset      `yaml:"utc_offset"`
	TimeZone         string         `yaml:"time_zone"`
	TrustedProxies   []string       `yaml:"trusted_proxies"`
	Dedup            DedupConfig    `yaml:"dedup"`
	IgnoreBots       bool           `yaml:"ignore_bots"`
	RespectDNT       bool           `yaml:"respect_dnt"`
	IgnoreVisitors   []string       `yaml:"ignore_visitors"`
	AllowedReferrers []string       `yaml:"allowed_referrers"`
	QueueSize        int            `yaml:"queue_size"`
	Verify           VerifyConfig   `yaml:"verify"`
	MetricsAddress   string         `yaml:"metrics_address"`
	Shutdown         ShutdownConfig `yaml:"shutdown"`
	BadgeLabel       string         `yaml:"badge_label"`
	OutcomeHeader    bool           `yaml:"outcome_header"`

	// parsed holds what validate parsed; it is not a key.
	parsed parsedConfig
}

// parsedConfig is the part of a Config that validate parsed, ready for use.
type parsedConfig struct {
	base        *url.URL       // tracked_base_url, its host in ASCII (punycode), as browsers send it
	siteName    string         // tracked_base_url's host as written, shown on the pages
	contentType string         // of response_filename
	trusted     []netip.Prefix // trusted_proxies
	ignore      []netip.Prefix // ignore_visitors
	referrers   []string       // allowed_referrers, as lower-case host names
	loc         *time.Location // time_zone, or else utc_offset
}

// DBConfig is how to reach PostgreSQL.
type DBConfig struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	Database string `yaml:"database"`
	SSLMode  string `yaml:"sslmode"`
	// ConnectTimeout bounds how long the start waits for PostgreSQL.
	ConnectTimeout Duration `yaml:"connect_timeout"`
}

// UTCOffset is the offset at which times are shown and bucketed.
type UTCOffset struct {
	Hours   int `yaml:"hours"`
	Minutes int `yaml:"minutes"`
}

// DedupConfig bounds how long and how many (visitor, path) pairs are remembered.
type DedupConfig struct {
	Window     Duration `yaml:"window"`
	MaxEntries int      `yaml:"max_entries"`
}

// VerifyConfig bounds the checks of new paths against the tracked website.
type VerifyConfig struct {
	Timeout             Duration `yaml:"timeout"`
	PerMinute           int      `yaml:"per_minute"`
	PerVisitorPerMinute int      `yaml:"per_visitor_per_minute"`
}

// ShutdownConfig bounds how long a stop may take to finish requests and write queued calls.
type ShutdownConfig struct {
	Timeout Duration `yaml:"timeout"`
}

// Duration is a time.Duration written as "24h" or "90s" (or 0) in YAML and the environment.
type Duration time.Duration

// UnmarshalYAML accepts a Go duration string or the number 0.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// parseDuration parses "24h", "1h30m" or "0".
func parseDuration(s string) (Duration, error) {
	if s == "0" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 30s, 15m or 24h", s)
	}
	return Duration(v), nil
}

// defaultConfig returns the configuration before the file and the environment are applied.
func defaultConfig() Config {
	return Config{
		SocketAddress:  "0.0.0.0:80",
		DB:             DBConfig{SSLMode: "prefer", ConnectTimeout: Duration(30 * time.Second)},
		TrustedProxies: []string{"127.0.0.0/8", "::1/128"},
		Dedup:          DedupConfig{MaxEntries: 1_000_000},
		IgnoreBots:     true,
		QueueSize:      100_000,
		Verify: VerifyConfig{
			Timeout:             Duration(5 * time.Second),
			PerMinute:           120,
			PerVisitorPerMinute: 20,
		},
		Shutdown:   ShutdownConfig{Timeout: Duration(10 * time.Second)},
		BadgeLabel: "visits",
	}
}

// requiredKeys must be given in the file or the environment.
var requiredKeys = []string{
	"response_filename", "tracked_base_url",
	"db.host", "db.port", "db.username", "db.password", "db.database",
}

// configFile is the name of the configuration file in the data folder.
const configFile = "config.yaml"

// loadConfig reads config.yaml from dataDir, applies the environment over it and validates it.
// Every error names the key or file that is wrong.
func loadConfig(dataDir string, getenv func(string) string) (Config, error) {
	cfg := defaultConfig()
	set := map[string]bool{}
	path := filepath.Join(dataDir, configFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return cfg, fmt.Errorf("%s: %v", path, oneLine(err))
	}
	if len(doc.Content) > 0 {
		if err := decodeMapping(doc.Content[0], reflect.ValueOf(&cfg).Elem(), "", set); err != nil {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "", getenv, set); err != nil {
		return cfg, err
	}
	for _, key := range requiredKeys {
		if !set[key] {
			return cfg, fmt.Errorf("config key %s is missing: set it in %s or as %s", key, path, envName(key))
		}
	}
	return cfg, cfg.validate()
}

// oneLine folds a multi-line error message into one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// isLeaf reports whether a field holds a value rather than a nested section.
func isLeaf(t reflect.Type) bool {
	return t.Kind() != reflect.Struct
}

// fieldByKey finds the exported struct field whose yaml tag is key.
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if t.Field(i).IsExported() && t.Field(i).Tag.Get("yaml") == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// decodeMapping decodes a YAML mapping into the struct v key by key, so that an unknown
// key or a wrong value is reported with its full key path, and records every key it set.
func decodeMapping(n *yaml.Node, v reflect.Value, prefix string, set map[string]bool) error {
	if n.Kind != yaml.MappingNode {
		if prefix == "" {
			return fmt.Errorf("line %d: the file must be a mapping of keys to values", n.Line)
		}
		return fmt.Errorf("line %d: %s must be a mapping of keys to values", n.Line, strings.TrimSuffix(prefix, "."))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := prefix + k.Value
		f, ok := fieldByKey(v, k.Value)
		if !ok {
			return fmt.Errorf("line %d: unknown key %s", k.Line, key)
		}
		if !isLeaf(f.Type()) {
			if err := decodeMapping(val, f, key+".", set); err != nil {
				return err
			}
			continue
		}
		if err := val.Decode(f.Addr().Interface()); err != nil {
			return fmt.Errorf("line %d: %s: %s", val.Line, key, strings.TrimPrefix(oneLine(err), "yaml: unmarshal errors: "))
		}
		set[key] = true
	}
	return nil
}

// envName is the environment variable that overrides a key: db.password is OXITRAFFIC_DB__PASSWORD.
func envName(key string) string {
	return "OXITRAFFIC_" + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

// applyEnv sets every key whose environment variable is not empty, and records it as set.
func applyEnv(v reflect.Value, prefix string, getenv func(string) string, set map[string]bool) error {
	t := v.Type()
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			continue
		}
		key := prefix + t.Field(i).Tag.Get("yaml")
		f := v.Field(i)
		if !isLeaf(f.Type()) {
			if err := applyEnv(f, key+".", getenv, set); err != nil {
				return err
			}
			continue
		}
		s := getenv(envName(key))
		if s == "" {
			continue
		}
		if err := setFromString(f, s); err != nil {
			return fmt.Errorf("%s (config key %s): %v", envName(key), key, err)
		}
		set[key] = true
	}
	return nil
}

// setFromString parses s into the leaf field f according to its type.
func setFromString(f reflect.Value, s string) error {
	switch f.Addr().Interface().(type) {
	case *Duration:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(d))
		return nil
	case *[]string:
		var list []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		f.Set(reflect.ValueOf(list))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		f.SetInt(int64(n))
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		f.SetBool(b)
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// sslModes are the libpq sslmode values that the driver supports.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// maxDedupWindow is the longest dedup.window; entries store seconds in 32 bits.
const maxDedupWindow = 365 * 24 * time.Hour

// validate checks every value and names the key of the first one that is wrong; it keeps
// what it parsed in c.parsed.
func (c *Config) validate() error {
	var p parsedConfig
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("config key %s: "+format, append([]any{key}, args...)...)
	}
	if _, _, err := splitHostPort(c.SocketAddress); err != nil {
		return bad("socket_address", "%q is not host:port (%v)", c.SocketAddress, err)
	}
	if c.MetricsAddress != "" {
		if _, _, err := splitHostPort(c.MetricsAddress); err != nil {
			return bad("metrics_address", "%q is not host:port (%v)", c.MetricsAddress, err)
		}
	}
	if c.ResponseFilename == "" || strings.ContainsAny(c.ResponseFilename, `/\`) {
		return bad("response_filename", "%q must be the name of a file in the data folder", c.ResponseFilename)
	}
	ct, err := contentType(c.ResponseFilename)
	if err != nil {
		return bad("response_filename", "%v", err)
	}
	p.contentType = ct
	u, err := url.Parse(c.TrackedBaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return bad("tracked_base_url", "%q is not an http:// or https:// URL of a website", c.TrackedBaseURL)
	}
	p.siteName = u.Host
	if u.Host, err = asciiHostPort(u.Host); err != nil {
		return bad("tracked_base_url", "%q: %v", c.TrackedBaseURL, err)
	}
	p.base = u
	if c.DB.Host == "" {
		return bad("db.host", "must not be empty")
	}
	if c.DB.Port < 1 || c.DB.Port > 65535 {
		return bad("db.port", "%d is not a port (1 to 65535)", c.DB.Port)
	}
	if c.DB.Username == "" {
		return bad("db.username", "must not be empty")
	}
	if c.DB.Database == "" {
		return bad("db.database", "must not be empty")
	}
	if !slices.Contains(sslModes, c.DB.SSLMode) {
		return bad("db.sslmode", "%q is not one of %s", c.DB.SSLMode, strings.Join(sslModes, ", "))
	}
	if c.DB.ConnectTimeout <= 0 {
		return bad("db.connect_timeout", "must be positive")
	}
	if c.UTCOffset.Hours < -23 || c.UTCOffset.Hours > 23 {
		return bad("utc_offset.hours", "%d is out of range (-23 to 23)", c.UTCOffset.Hours)
	}
	if c.UTCOffset.Minutes < -59 || c.UTCOffset.Minutes > 59 {
		return bad("utc_offset.minutes", "%d is out of range (-59 to 59)", c.UTCOffset.Minutes)
	}
	if c.UTCOffset.Hours*c.UTCOffset.Minutes < 0 {
		return bad("utc_offset.minutes", "%d must have the same sign as utc_offset.hours (%d)", c.UTCOffset.Minutes, c.UTCOffset.Hours)
	}
	secs := c.UTCOffset.Hours*3600 + c.UTCOffset.Minutes*60
	p.loc = time.FixedZone(formatOffset(secs), secs)
	if c.TimeZone != "" {
		if secs != 0 {
			return bad("time_zone", "%q and utc_offset (%s) are both set: set one of time_zone and utc_offset", c.TimeZone, formatOffset(secs))
		}
		loc, err := time.LoadLocation(c.TimeZone)
		if err != nil || c.TimeZone == "Local" {
			return bad("time_zone", "%q is not a time zone name like Europe/Berlin or America/New_York", c.TimeZone)
		}
		p.loc = loc
	}
	if p.trusted, err = parsePrefixes(c.TrustedProxies); err != nil {
		return bad("trusted_proxies", "%v", err)
	}
	if p.ignore, err = parsePrefixes(c.IgnoreVisitors); err != nil {
		return bad("ignore_visitors", "%v", err)
	}
	if p.referrers, err = parseHosts(c.AllowedReferrers); err != nil {
		return bad("allowed_referrers", "%v", err)
	}
	if c.Dedup.Window < 0 || time.Duration(c.Dedup.Window) > maxDedupWindow {
		return bad("dedup.window", "must be between 0 and %s", maxDedupWindow)
	}
	if c.Dedup.MaxEntries < 2 {
		return bad("dedup.max_entries", "%d is too small (at least 2)", c.Dedup.MaxEntries)
	}
	if c.QueueSize < 1 {
		return bad("queue_size", "%d is too small (at least 1)", c.QueueSize)
	}
	if c.Verify.Timeout <= 0 {
		return bad("verify.timeout", "must be positive")
	}
	if c.Verify.PerMinute < 1 {
		return bad("verify.per_minute", "%d is too small (at least 1)", c.Verify.PerMinute)
	}
	if c.Verify.PerVisitorPerMinute < 1 {
		return bad("verify.per_visitor_per_minute", "%d is too small (at least 1)", c.Verify.PerVisitorPerMinute)
	}
	if c.Shutdown.Timeout <= 0 {
		return bad("shutdown.timeout", "must be positive")
	}
	if err := checkBadgeLabel(c.BadgeLabel); err != nil {
		return bad("badge_label", "%v", err)
	}
	c.parsed = p
	return nil
}

// splitHostPort checks a listen address and returns its parts.
func splitHostPort(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, errors.New("the port must be a number from 0 to 65535")
	}
	return h, n, nil
}

// parsePrefixes parses CIDRs such as 10.0.0.0/8; a bare address is a single-host prefix.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR like 10.0.0.0/8 or an address", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// parseHosts reads host names such as www.example.com, or URLs whose host is taken, as
// lower-case ASCII host names (punycode for international names) without a port.
func parseHosts(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, s := range list {
		h := s
		if strings.Contains(s, "://") {
			u, err := url.Parse(s)
			if err != nil || u.Hostname() == "" {
				return nil, fmt.Errorf("%q is not a host name like www.example.com", s)
			}
			h = u.Hostname()
		}
		h = strings.TrimSuffix(h, ".")
		if h == "" || strings.ContainsAny(h, "/?#@ ") {
			return nil, fmt.Errorf("%q is not a host name like www.example.com", s)
		}
		a, err := asciiHost(h)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// formatOffset renders an offset in seconds as +05:30.
func formatOffset(secs int) string {
	sign := '+'
	if secs < 0 {
		sign, secs = '-', -secs
	}
	return fmt.Sprintf("%c%02d:%02d", sign, secs/3600, secs%3600/60)
}

// maxBadgeLabel is the longest badge_label, in characters: a badge is a small image.
const maxBadgeLabel = 32

// checkBadgeLabel accepts a short, printable, non-empty label for the badge.
func checkBadgeLabel(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxBadgeLabel {
		return fmt.Errorf("%q must be UTF-8 text of at most %d characters", s, maxBadgeLabel)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%q holds a character that is not printable", s)
		}
	}
	return nil
}
