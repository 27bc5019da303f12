package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goodConfig is a complete config.yaml; the database is never reached by these tests.
const goodConfig = `socket_address: "127.0.0.1:0"
response_filename: pixel.gif
tracked_base_url: "https://blog.example.com"
db:
  host: /nonexistent
  port: 5432
  username: oxitraffic
  password: secret
  database: oxitraffic
`

// runWith runs the daemon on a data folder holding config (and the image unless noImage)
// and returns run's error.
func runWith(t *testing.T, config string, env map[string]string, noImage bool) error {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if !noImage {
		if err := os.WriteFile(filepath.Join(dir, "pixel.gif"), testImage, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	getenv := func(k string) string {
		if k == "OXITRAFFIC_DATA_DIR" {
			return dir
		}
		return env[k]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	return run(ctx, nil, getenv, &out, &errOut)
}

// TestConfigErrors checks that every wrong or missing setting stops the start with one line naming it.
func TestConfigErrors(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(goodConfig, old, new, 1) }
	for _, c := range []struct {
		name    string
		config  string
		env     map[string]string
		noImage bool
		want    string
	}{
		{name: "unknown key", config: goodConfig + "colour: blue\n", want: "unknown key colour"},
		{name: "unknown nested key", config: replace("  port: 5432", "  port: 5432\n  pass: x"), want: "unknown key db.pass"},
		{name: "missing tracked_base_url", config: replace(`tracked_base_url: "https://blog.example.com"`, ""), want: "config key tracked_base_url is missing"},
		{name: "missing db.password", config: replace("  password: secret\n", ""), want: "config key db.password is missing"},
		{name: "missing response_filename", config: replace("response_filename: pixel.gif\n", ""), want: "response_filename is missing"},
		{name: "unparsable tracked_base_url", config: replace("https://blog.example.com", "blog.example.com"), want: "config key tracked_base_url"},
		{name: "port not a number", config: replace("port: 5432", "port: five"), want: "db.port"},
		{name: "port out of range", config: replace("port: 5432", "port: 70000"), want: "config key db.port"},
		{name: "hours out of range", config: goodConfig + "utc_offset:\n  hours: 24\n", want: "config key utc_offset.hours"},
		{name: "minutes out of range", config: goodConfig + "utc_offset:\n  minutes: -60\n", want: "config key utc_offset.minutes"},
		{name: "bad sslmode", config: replace("  port: 5432", "  port: 5432\n  sslmode: maybe"), want: "config key db.sslmode"},
		{name: "bad trusted proxy", config: goodConfig + "trusted_proxies: [\"10.0.0.0/33\"]\n", want: "config key trusted_proxies"},
		{name: "bad ignored visitor", config: goodConfig + "ignore_visitors: [\"my home\"]\n", want: "config key ignore_visitors"},
		{name: "bad allowed referrer", config: goodConfig + "allowed_referrers: [\"https://\"]\n", want: "config key allowed_referrers"},
		{name: "allowed referrer with a path", config: goodConfig + "allowed_referrers: [\"example.com/blog\"]\n", want: "config key allowed_referrers"},
		{name: "bad dedup window", config: goodConfig + "dedup:\n  window: soon\n", want: "dedup.window"},
		{name: "empty badge label", config: goodConfig + "badge_label: \"\"\n", want: "config key badge_label"},
		{name: "long badge label", config: goodConfig + "badge_label: " + strings.Repeat("x", 33) + "\n", want: "config key badge_label"},
		{name: "image not an image", config: replace("pixel.gif", "pixel.txt"), want: "config key response_filename"},
		{name: "image missing", config: goodConfig, noImage: true, want: "pixel.gif"},
		{name: "not yaml", config: "db: [", want: "config.yaml"},
		{name: "env wins and is checked", config: goodConfig, env: map[string]string{"OXITRAFFIC_SOCKET_ADDRESS": "nowhere"}, want: "config key socket_address"},
		{name: "env number", config: goodConfig, env: map[string]string{"OXITRAFFIC_DB__PORT": "x"}, want: "OXITRAFFIC_DB__PORT (config key db.port)"},
		{name: "env fills a missing key", config: replace("  password: secret\n", ""), env: map[string]string{"OXITRAFFIC_DB__PASSWORD": "x", "OXITRAFFIC_DB__CONNECT_TIMEOUT": "1s"}, want: "PostgreSQL could not be reached (database oxitraffic on /nonexistent port 5432)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := runWith(t, c.config, c.env, c.noImage)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("run() = %v; want one line containing %q", err, c.want)
			}
		})
	}
}

// TestMissingDataDir checks that a start without OXITRAFFIC_DATA_DIR names the variable.
func TestMissingDataDir(t *testing.T) {
	var out, errOut syncBuffer
	err := run(context.Background(), nil, func(string) string { return "" }, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "OXITRAFFIC_DATA_DIR") {
		t.Errorf("run() without OXITRAFFIC_DATA_DIR = %v; want an error naming it", err)
	}
}

// TestConfigDefaultsAndEnvOverrides checks the defaults and that environment variables win over the file.
func TestConfigDefaultsAndEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(goodConfig+"dedup:\n  window: 24h\n"), 0o600)
	env := map[string]string{
		"OXITRAFFIC_DB__PASSWORD":    "from-env",
		"OXITRAFFIC_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.0.0/16",
		"OXITRAFFIC_RESPECT_DNT":     "true",
	}
	cfg, err := loadConfig(dir, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"db.password", cfg.DB.Password, "from-env"},
		{"db.sslmode", cfg.DB.SSLMode, "prefer"},
		{"trusted_proxies", strings.Join(cfg.TrustedProxies, " "), "10.0.0.0/8 192.168.0.0/16"},
		{"respect_dnt", cfg.RespectDNT, true},
		{"ignore_bots", cfg.IgnoreBots, true},
		{"dedup.window", time.Duration(cfg.Dedup.Window), 24 * time.Hour},
		{"dedup.max_entries", cfg.Dedup.MaxEntries, 1_000_000},
		{"utc_offset.hours", cfg.UTCOffset.Hours, 0},
		{"badge_label", cfg.BadgeLabel, "visits"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.key, c.got, c.want)
		}
	}
}

// TestBadgeLabelFromEnv checks that OXITRAFFIC_BADGE_LABEL sets the badge's label.
func TestBadgeLabelFromEnv(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(goodConfig), 0o600)
	cfg, err := loadConfig(dir, func(k string) string {
		return map[string]string{"OXITRAFFIC_BADGE_LABEL": "Leser"}[k]
	})
	if err != nil || cfg.BadgeLabel != "Leser" {
		t.Errorf("loadConfig with OXITRAFFIC_BADGE_LABEL=Leser = %q, %v; want Leser", cfg.BadgeLabel, err)
	}
}

// TestUnreachableDatabaseStopsTheStart checks that an unreachable PostgreSQL stops the start within db.connect_timeout.
func TestUnreachableDatabaseStopsTheStart(t *testing.T) {
	start := time.Now()
	err := runWith(t, goodConfig+"", map[string]string{"OXITRAFFIC_DB__CONNECT_TIMEOUT": "2s"}, false)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL could not be reached") {
		t.Errorf("run() = %v; want PostgreSQL could not be reached", err)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("run() took %s to give up; want about db.connect_timeout (2s)", el)
	}
}
