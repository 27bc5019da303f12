package main

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestHealthcheckURL checks where -healthcheck asks for each kind of socket_address.
func TestHealthcheckURL(t *testing.T) {
	for _, tc := range []struct {
		addr, want string
	}{
		{"0.0.0.0:8080", "http://127.0.0.1:8080/healthz"},
		{":80", "http://127.0.0.1:80/healthz"},
		{"[::]:8080", "http://[::1]:8080/healthz"},
		{"127.0.0.1:9000", "http://127.0.0.1:9000/healthz"},
		{"[::1]:9000", "http://[::1]:9000/healthz"},
		{"counter.internal:8080", "http://counter.internal:8080/healthz"},
	} {
		got, err := healthcheckURL(tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("healthcheckURL(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	if got, err := healthcheckURL("8080"); err == nil {
		t.Errorf("healthcheckURL(%q) = %q, nil; want an error", "8080", got)
	}
}

// TestHealthcheckMode runs oxitraffic -healthcheck, with the daemon's own data folder and
// environment, against a running daemon, a stopped one and servers that answer wrong.
func TestHealthcheckMode(t *testing.T) {
	d := startDaemon(t, "")
	daemonAddr := strings.TrimPrefix(d.url, "http://")
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database unavailable: 3 calls queued", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>a web server</html>"))
	}))
	defer other.Close()
	stopped := httptest.NewServer(http.NotFoundHandler())
	stoppedAddr := strings.TrimPrefix(stopped.URL, "http://")
	stopped.Close()

	healthcheck := func(addr string) (string, error) {
		env := map[string]string{"OXITRAFFIC_DATA_DIR": d.dataDir, "OXITRAFFIC_SOCKET_ADDRESS": addr}
		var stdout, stderr syncBuffer
		err := run(context.Background(), []string{"-healthcheck"}, func(k string) string { return env[k] }, &stdout, &stderr)
		return stdout.String(), err
	}
	for _, tc := range []struct {
		name, addr, want string
		healthy          bool
	}{
		{"running daemon", daemonAddr, "healthy: http://" + daemonAddr + "/healthz answered 200 ok\n", true},
		{"database down", strings.TrimPrefix(down.URL, "http://"), "answered 503 \"database unavailable: 3 calls queued\"", false},
		{"another server", strings.TrimPrefix(other.URL, "http://"), "answered 200 \"<html>a web server</html>\"", false},
		{"nothing listening", stoppedAddr, "connection refused", false},
	} {
		out, err := healthcheck(tc.addr)
		switch {
		case tc.healthy && (err != nil || out != tc.want):
			t.Errorf("%s: -healthcheck = %q, %v; want %q, nil", tc.name, out, err, tc.want)
		case !tc.healthy && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "unhealthy: ")):
			t.Errorf("%s: -healthcheck = %q, %v; want an error \"unhealthy: ...%s...\"", tc.name, out, err, tc.want)
		}
	}
	// The check leaves the daemon's log file alone: it is no second daemon.
	if b, _ := os.ReadFile(filepath.Join(d.dataDir, logFileName)); strings.Count(string(b), "msg=starting") != 1 {
		t.Errorf("log file after the checks has %d start lines; want 1:\n%s", strings.Count(string(b), "msg=starting"), b)
	}
}

// composeFile is the part of compose.yaml that the test checks.
type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Restart     string            `yaml:"restart"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		ReadOnly bool     `yaml:"read_only"`
		CapDrop  []string `yaml:"cap_drop"`
		Volumes  []string `yaml:"volumes"`
		Ports    []string `yaml:"ports"`
	} `yaml:"services"`
}

// containerfile returns the instructions of the Containerfile, keyword first, with
// continuation lines joined.
func containerfile(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string][]string{}
	var line string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(s, `\`); ok {
			line += cont + " "
			continue
		}
		keyword, rest, _ := strings.Cut(line+s, " ")
		got[strings.ToUpper(keyword)] = append(got[strings.ToUpper(keyword)], strings.Join(strings.Fields(rest), " "))
		line = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestContainerfile checks what the image promises: an empty base (nothing pulled), the
// data folder, a numeric user that is not root, the port, and a healthcheck without a shell.
func TestContainerfile(t *testing.T) {
	c := containerfile(t)
	want := map[string][]string{
		"FROM":        {"scratch"},
		"ENV":         {"OXITRAFFIC_DATA_DIR=/volumes/data OXITRAFFIC_SOCKET_ADDRESS=0.0.0.0:8080"},
		"VOLUME":      {"/volumes/data"},
		"EXPOSE":      {"8080"},
		"ENTRYPOINT":  {`["/oxitraffic"]`},
		"HEALTHCHECK": {`--interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["/oxitraffic", "-healthcheck"]`},
	}
	for keyword, w := range want {
		if !slices.Equal(c[keyword], w) {
			t.Errorf("Containerfile %s = %q; want %q", keyword, c[keyword], w)
		}
	}
	if u := c["USER"]; len(u) != 1 || !regexp.MustCompile(`^[1-9][0-9]*:[0-9]+$`).MatchString(u[0]) {
		t.Errorf("Containerfile USER = %q; want one numeric uid:gid, not root", u)
	}
	for _, copied := range c["COPY"] {
		src := strings.Fields(copied)[0]
		if !strings.HasPrefix(src, "build/") {
			t.Errorf("Containerfile COPY %s; want only what make image puts in build/", copied)
		}
	}
}

// TestComposeFile reads compose.yaml as docker compose and podman-compose do and checks its
// structure, then loads the configuration that its environment gives OxiTraffic.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	pg, ok := c.Services["postgres"]
	if !ok {
		t.Fatalf("compose.yaml services = %v; want postgres and oxitraffic", c.Services)
	}
	ox, ok := c.Services["oxitraffic"]
	if !ok {
		t.Fatalf("compose.yaml services = %v; want postgres and oxitraffic", c.Services)
	}
	if m := regexp.MustCompile(`^docker\.io/library/postgres:(\d+)$`).FindStringSubmatch(pg.Image); m == nil {
		t.Errorf("postgres image = %q; want docker.io/library/postgres:<major>", pg.Image)
	} else if major, _ := strconv.Atoi(m[1]); major < 17 {
		t.Errorf("postgres image = %q; want a current major version (17 or later)", pg.Image)
	}
	if test := pg.Healthcheck.Test; len(test) != 2 || test[0] != "CMD-SHELL" || !strings.HasPrefix(test[1], "pg_isready -U "+pg.Environment["POSTGRES_USER"]) {
		t.Errorf("postgres healthcheck test = %q; want [CMD-SHELL \"pg_isready -U %s ...\"]", test, pg.Environment["POSTGRES_USER"])
	}
	if ox.Image != "localhost/oxitraffic:latest" || ox.Build.Context != "." || ox.Build.Dockerfile != "Containerfile" {
		t.Errorf("oxitraffic image, build = %q, %+v; want localhost/oxitraffic:latest built from . and Containerfile", ox.Image, ox.Build)
	}
	if got := ox.DependsOn["postgres"].Condition; got != "service_healthy" {
		t.Errorf("oxitraffic depends_on postgres condition = %q; want service_healthy", got)
	}
	if !ox.ReadOnly || !slices.Equal(ox.CapDrop, []string{"ALL"}) {
		t.Errorf("oxitraffic read_only, cap_drop = %v, %q; want true, [ALL]", ox.ReadOnly, ox.CapDrop)
	}
	if !slices.ContainsFunc(ox.Volumes, func(v string) bool { return strings.Contains(v, ":/volumes/data") }) {
		t.Errorf("oxitraffic volumes = %q; want the data folder mounted at /volumes/data", ox.Volumes)
	}
	for name, s := range c.Services {
		if s.Restart == "" {
			t.Errorf("%s restart = \"\"; want a restart policy", name)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s port %q; want it bound to 127.0.0.1", name, p)
			}
		}
		for k, v := range s.Environment {
			if strings.Contains(k, "PASSWORD") && !regexp.MustCompile(`^\$\{[A-Z_]+:\?[^}]*\}$`).MatchString(v) {
				t.Errorf("%s environment %s = %q; want ${VARIABLE:?...} from .env, not a password", name, k, v)
			}
		}
	}
	if len(ox.Ports) != 1 || !strings.HasSuffix(ox.Ports[0], ":8080") {
		t.Errorf("oxitraffic ports = %q; want one, to the image's port 8080", ox.Ports)
	}

	// The environment of the oxitraffic service, with .env's variables, is a whole
	// configuration over an empty config.yaml.
	dotenv := map[string]string{"POSTGRES_PASSWORD": "s3cret", "OXITRAFFIC_TRACKED_BASE_URL": "https://blog.example.com"}
	env := map[string]string{"OXITRAFFIC_DATA_DIR": "/volumes/data", "OXITRAFFIC_SOCKET_ADDRESS": "0.0.0.0:8080"}
	ref := regexp.MustCompile(`^\$\{([A-Z_]+):\?[^}]*\}$`)
	for k, v := range ox.Environment {
		if m := ref.FindStringSubmatch(v); m != nil {
			v = dotenv[m[1]]
		}
		env[k] = v
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, configFile), nil, 0o600)
	cfg, err := loadConfig(dir, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("loadConfig with compose.yaml's environment = %v; want a valid configuration", err)
	}
	if cfg.DB.Host != "postgres" || cfg.DB.Password != "s3cret" || cfg.DB.Database != pg.Environment["POSTGRES_DB"] || cfg.DB.Username != pg.Environment["POSTGRES_USER"] {
		t.Errorf("compose.yaml's db settings = %+v; want host postgres, the password of .env, and the postgres service's user and database", cfg.DB)
	}

	example, err := os.ReadFile("oxitraffic.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(example), "\n") {
		if v, ok := strings.CutPrefix(line, "POSTGRES_PASSWORD="); ok && v != "" {
			t.Errorf("oxitraffic.env.example sets POSTGRES_PASSWORD=%q; want it empty, so that compose asks for one", v)
		}
	}
}
