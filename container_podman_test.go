//go:build container

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// containerImage is the image that make image builds.
const containerImage = "localhost/oxitraffic:latest"

// maxImageSize is the bound on the image's size: 30 MB.
const maxImageSize = 30_000_000

// podman runs podman commands, with CONTAINERS_CONF set only where this machine needs it.
type podman struct {
	env []string
}

// run runs podman with args and returns its combined output.
func (p *podman) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs podman with args and stops the test when it fails.
func (p *podman) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.run(args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// newPodman returns podman as this machine runs it: with its own configuration when a
// container starts with it, otherwise with scripts/containers.conf (runc, lower ulimits),
// which hosts with cgroups v1 or a low hard RLIMIT_NOFILE need.
func newPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is not installed (make podman installs it): %v", err)
	}
	p := &podman{env: os.Environ()}
	probe := []string{"run", "--rm", "--pull=never", "--read-only", "--cap-drop=ALL", "--network=none", containerImage, "-version"}
	out, err := p.run(probe...)
	if err == nil || os.Getenv("CONTAINERS_CONF") != "" {
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(probe, " "), err, out)
		}
		return p
	}
	conf, err2 := filepath.Abs("scripts/containers.conf")
	if err2 != nil {
		t.Fatal(err2)
	}
	p.env = append(os.Environ(), "CONTAINERS_CONF="+conf)
	if out2, err2 := p.run(probe...); err2 != nil {
		t.Fatalf("podman %s: %v\n%s\nwith CONTAINERS_CONF=%s: %v\n%s", strings.Join(probe, " "), err, out, conf, err2, out2)
	}
	why := strings.TrimSpace(out)
	if i := strings.Index(why, "Error: "); i >= 0 {
		why, _, _ = strings.Cut(why[i:], "\n")
	}
	t.Logf("podman needs CONTAINERS_CONF=%s on this machine; without it: %s", conf, why)
	return p
}

// imageInspect is the part of podman image inspect that the test checks.
type imageInspect struct {
	Size   int64
	Config struct {
		User         string
		Env          []string
		Entrypoint   []string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
	}
	Healthcheck *struct {
		Test []string
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// containerUser returns who the container runs as, and podman's flags for it: as root, the
// owner of the tests' PostgreSQL socket folder (nobody), which may enter it; rootless, the
// user running the test, kept as itself inside.
func containerUser(dbHost string) (uid, gid int, flags []string) {
	if os.Geteuid() != 0 {
		uid, gid = os.Getuid(), os.Getgid()
		return uid, gid, []string{"--userns=keep-id", fmt.Sprintf("--user=%d:%d", uid, gid)}
	}
	uid, gid = 65534, 65534
	if fi, err := os.Stat(dbHost); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	return uid, gid, []string{fmt.Sprintf("--user=%d:%d", uid, gid)}
}

// TestContainerImage builds the image with make image and runs it as it is meant to run:
// read-only, without capabilities, as a user that is not root, every setting from the
// environment, against the tests' PostgreSQL and a fake tracked site. Its healthcheck
// passes, a call is counted, the log file is in the data folder, and podman stop ends it
// cleanly with the queue written.
func TestContainerImage(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is not installed (make podman installs it): %v", err)
	}
	if out, err := exec.Command("make", "--no-print-directory", "image").CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	p := newPodman(t)

	var inspected []imageInspect
	if err := json.Unmarshal([]byte(p.must(t, "image", "inspect", containerImage)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect %s: %v, %d images", containerImage, err, len(inspected))
	}
	img := inspected[0]
	t.Logf("%s: %.1f MB", containerImage, float64(img.Size)/1e6)
	if img.Size > maxImageSize {
		t.Errorf("image size = %d bytes; want at most %d", img.Size, maxImageSize)
	}
	if uid, _, _ := strings.Cut(img.Config.User, ":"); uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("image user = %q; want a numeric user that is not root", img.Config.User)
	}
	if _, ok := img.Config.Volumes["/volumes/data"]; !ok {
		t.Errorf("image volumes = %v; want /volumes/data", img.Config.Volumes)
	}
	if _, ok := img.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("image exposed ports = %v; want 8080/tcp", img.Config.ExposedPorts)
	}
	if !strings.Contains(strings.Join(img.Config.Env, " "), "OXITRAFFIC_DATA_DIR=/volumes/data") {
		t.Errorf("image env = %q; want OXITRAFFIC_DATA_DIR=/volumes/data", img.Config.Env)
	}
	if img.Healthcheck == nil || strings.Join(img.Healthcheck.Test, " ") != "CMD /oxitraffic -healthcheck" {
		t.Errorf("image healthcheck = %+v; want CMD /oxitraffic -healthcheck (built with --format docker)", img.Healthcheck)
	}

	dbCfg, db := newTestDB(t)
	st := newSite(t)
	uid, gid, userFlags := containerUser(dbCfg.Host)
	dataDir := t.TempDir()
	// Every key comes from the environment; only an empty password cannot, as an empty
	// variable sets nothing.
	config := ""
	if dbCfg.Password == "" {
		config = "db:\n  password: \"\"\n"
	}
	for name, content := range map[string][]byte{configFile: []byte(config), "pixel.gif": testImage} {
		if err := os.WriteFile(filepath.Join(dataDir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		for _, name := range []string{dataDir, filepath.Join(dataDir, configFile), filepath.Join(dataDir, "pixel.gif")} {
			if err := os.Chown(name, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}

	port := freePort(t)
	dbHost := dbCfg.Host
	name := fmt.Sprintf("oxitraffic-test-%d", os.Getpid())
	args := append([]string{"run", "--detach", "--name", name, "--pull=never",
		"--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--network=host",
		"--volume", dataDir + ":/volumes/data"}, userFlags...)
	if strings.HasPrefix(dbHost, "/") {
		// The tests' PostgreSQL listens on a unix socket in this folder only.
		args = append(args, "--volume", dbHost+":/run/postgresql")
		dbHost = "/run/postgresql"
	}
	for k, v := range map[string]string{
		"OXITRAFFIC_SOCKET_ADDRESS":    fmt.Sprintf("127.0.0.1:%d", port),
		"OXITRAFFIC_RESPONSE_FILENAME": "pixel.gif",
		"OXITRAFFIC_TRACKED_BASE_URL":  st.URL,
		"OXITRAFFIC_DB__HOST":          dbHost,
		"OXITRAFFIC_DB__PORT":          strconv.Itoa(dbCfg.Port),
		"OXITRAFFIC_DB__USERNAME":      dbCfg.Username,
		"OXITRAFFIC_DB__PASSWORD":      dbCfg.Password,
		"OXITRAFFIC_DB__DATABASE":      dbCfg.Database,
		"OXITRAFFIC_DB__SSLMODE":       dbCfg.SSLMode,
	} {
		if v != "" {
			args = append(args, "--env", k+"="+v)
		}
	}
	p.must(t, append(args, containerImage)...)
	t.Cleanup(func() {
		if out, err := p.run("rm", "--force", "--volumes", name); err != nil {
			t.Errorf("podman rm %s: %v\n%s", name, err, out)
		}
	})

	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := p.run("healthcheck", "run", name)
		if err == nil {
			break
		}
		if state := strings.TrimSpace(p.must(t, "inspect", "--format", "{{.State.Status}}", name)); state != "running" {
			t.Fatalf("container is %s before it was healthy:\n%s", state, p.must(t, "logs", name))
		}
		if time.Now().After(deadline) {
			t.Fatalf("podman healthcheck run %s = %v, %q after 90s; want healthy\n%s", name, err, out, p.must(t, "logs", name))
		}
		time.Sleep(500 * time.Millisecond)
	}

	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	req, err := http.NewRequest(http.MethodGet, url+"/call/blog", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", desktopUA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, testImage) {
		t.Fatalf("GET /call/blog = %d %q; want 200 and the image\n%s", resp.StatusCode, body, p.must(t, "logs", name))
	}
	if status, body := get(t, url+"/api/count/blog"); status != http.StatusOK || body != "1\n" {
		t.Errorf("GET /api/count/blog = %d %q; want 200 \"1\\n\"", status, body)
	}

	// podman stop sends SIGTERM: the daemon writes its queue and exits 0, before the
	// timeout after which podman would kill it.
	p.must(t, "stop", "--time", "30", name)
	if code := strings.TrimSpace(p.must(t, "inspect", "--format", "{{.State.ExitCode}}", name)); code != "0" {
		t.Errorf("exit code after podman stop = %s; want 0\n%s", code, p.must(t, "logs", name))
	}
	if n := callRows(t, db, "blog"); n != 1 {
		t.Errorf("calls of blog after podman stop = %d; want 1", n)
	}
	logFile, err := os.ReadFile(filepath.Join(dataDir, logFileName))
	if err != nil {
		t.Fatalf("log file in the data folder: %v", err)
	}
	for _, want := range []string{"msg=starting", "db_name=" + dbCfg.Database, "msg=listening", "msg=stopping", "msg=stopped calls_written=1"} {
		if !strings.Contains(string(logFile), want) {
			t.Errorf("%s lacks %q:\n%s", logFileName, want, logFile)
		}
	}
}
