// Command bare is the baseline of `make bench`: a bare net/http handler that serves the
// same image with the same headers as OxiTraffic's /call, and does nothing else.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// main serves -image on every path at -addr.
func main() {
	addr := flag.String("addr", "127.0.0.1:8390", "listen address")
	image := flag.String("image", "demo/counter.svg", "the image to serve")
	flag.Parse()
	body, err := os.ReadFile(*image)
	if err != nil {
		log.Fatal(err)
	}
	ct := "image/svg+xml"
	if strings.EqualFold(filepath.Ext(*image), ".gif") {
		ct = "image/gif"
	}
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", ct)
		h.Set("Cache-Control", "private, max-age=86400")
		w.Write(body)
	})))
}
