# OxiTraffic: `make demo` runs it for real, `make test` runs every test.
# Both install PostgreSQL from Debian's packages where it is missing.

GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Fuzzing is bounded by a count of runs, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report its own deadline as a failure (golang/go#75804).
FUZZTIME ?= 30000x

.PHONY: all build demo test vet fuzz bench browser-test postgres chromium wrk bots clean image podman container-test

all: build

## build: a static binary; linking libc would add about 1.4 MB of resident pages.
build:
	CGO_ENABLED=0 $(GO) build -o oxitraffic .

## postgres: install PostgreSQL's server binaries if neither PATH nor Debian's folder has them.
## No cluster is created or started: the tests and the demo start their own.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; else \
		echo "installing PostgreSQL from Debian's packages"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends postgresql-common && \
		$(SUDO) sed -i 's/^#\? *create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends postgresql; \
	fi

## chromium: install headless Chromium for the browser test.
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium; }

## podman: install podman, runc and podman-compose for the container test and make image.
podman:
	@command -v podman >/dev/null 2>&1 && command -v podman-compose >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		podman runc uidmap slirp4netns fuse-overlayfs netavark aardvark-dns podman-compose; }

## wrk: install the HTTP load generator for the benchmarks.
wrk:
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends wrk; }

## demo: a throwaway PostgreSQL, a sample website and the daemon; Ctrl-C stops it all.
demo: postgres
	./demo/run.sh

## vet: gofmt, go vet and staticcheck (installed into $(go env GOPATH)/bin where missing).
STATICCHECK_VERSION ?= v0.8.2
vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	@sc="$$($(GO) env GOPATH)/bin/staticcheck"; \
		if ! "$$sc" -version 2>/dev/null | grep -qF "($(STATICCHECK_VERSION:v%=%))"; then \
			echo "installing staticcheck $(STATICCHECK_VERSION)"; \
			$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) || exit 1; \
		fi; \
		echo "staticcheck ./..."; "$$sc" ./...

## test: vet, every test against a throwaway PostgreSQL, a short fuzz of each parser, and
## the browser test where Chromium is installed (`make chromium`), the container test where
## podman is (`make podman`).
test: postgres vet
	$(GO) test -count=1 ./...
	$(GO) test -run '^$$' -fuzz '^FuzzPath$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzForwardedFor$$' -fuzztime $(FUZZTIME) .
	@if command -v chromium >/dev/null 2>&1; then $(MAKE) --no-print-directory browser-test; \
	else echo "chromium is not installed: the browser test did not run (make chromium installs it)"; fi
	@if command -v podman >/dev/null 2>&1; then $(MAKE) --no-print-directory container-test; \
	else echo "podman is not installed: the container test did not run (make podman installs it)"; fi

## browser-test: headless Chromium opens a page with the counter; screenshots go to screenshots/.
browser-test: postgres
	$(GO) test -count=1 -tags browser -run '^TestBrowser$$' -v .

## container-test: make image, then the image run read-only as a user that is not root
## against a throwaway PostgreSQL (needs podman: make podman).
container-test: postgres
	$(GO) test -count=1 -tags container -run '^TestContainerImage$$' -v .

## image: the container image localhost/oxitraffic:latest from Containerfile, built with
## podman (docker where podman is missing), nothing pulled: a static binary and the CA
## certificates in build/, on an empty base. The image it replaces is removed.
CONTAINER ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
CA_CERTS  ?= /etc/ssl/certs/ca-certificates.crt
image:
	mkdir -p build
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o build/oxitraffic .
	cp $(CA_CERTS) build/ca-certificates.crt
	@old=$$($(CONTAINER) image inspect --format '{{.Id}}' localhost/oxitraffic:latest 2>/dev/null); \
	if [ "$(CONTAINER)" = podman ]; then set -- --format docker --pull=never --layers=false; else set --; fi; \
	echo "$(CONTAINER) build $$* -f Containerfile -t localhost/oxitraffic:latest ."; \
	$(CONTAINER) build "$$@" -f Containerfile -t localhost/oxitraffic:latest . || exit 1; \
	new=$$($(CONTAINER) image inspect --format '{{.Id}}' localhost/oxitraffic:latest); \
	if [ -n "$$old" ] && [ "$$old" != "$$new" ]; then $(CONTAINER) rmi "$$old" >/dev/null 2>&1 || true; fi; \
	$(CONTAINER) image inspect --format 'localhost/oxitraffic:latest: {{.Size}} bytes' localhost/oxitraffic:latest

## bench: /call under load against a bare net/http handler, and the Go benchmarks.
bench: postgres wrk
	./bench/run.sh
	$(GO) test -run '^$$' -bench 'Dedup|Call|IsBot' -benchtime 1000000x .
	$(GO) test -run '^$$' -bench 'Big' -benchtime 20x .
	$(GO) test -run '^$$' -bench '^BenchmarkImport$$' -benchtime 1x .

## bots: regenerate bots_gen.go, the crawler patterns, from the npm package isbot (needs npm).
## To move to a newer isbot, change ISBOT_VERSION, run make bots, then make test.
ISBOT_VERSION ?= 5.2.3
bots:
	d=$$(mktemp -d) && (cd $$d && npm pack --silent isbot@$(ISBOT_VERSION) >/dev/null && tar xzf isbot-$(ISBOT_VERSION).tgz) && \
		$(GO) run ./bots/gen $$d/package; s=$$?; rm -rf $$d; exit $$s
	gofmt -l bots_gen.go

## fuzz: the same fuzz targets, longer.
fuzz:
	$(MAKE) FUZZTIME=3000000x test

clean:
	rm -f oxitraffic
	rm -rf build
