// Command site is the sample website of `make demo`: a few blog pages whose counter
// image points at the OxiTraffic daemon.
package main

import (
	"flag"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"strings"
)

// pages are the sample blog's pages, by path.
var pages = map[string]string{
	"":            "Welcome to the sample blog",
	"blog":        "All posts",
	"blog/hello":  "Hello, world",
	"blog/second": "A second post",
	"about":       "About this blog",
}

// page is the HTML of every sample page; the image is the OxiTraffic counter, linked to its plot.
var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}}</title>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>{{.Title}}</h1>
<p>This page is tracked by OxiTraffic. Reload it: the count goes up once per visitor.</p>
<nav>{{range .Links}}<a href="/{{.}}">/{{.}}</a> {{end}}</nav>
<p><a href="{{.Counter}}/dashboard/plot/{{.Path}}"><img src="{{.Counter}}/call/{{.Path}}" alt="visitor counter"></a></p>
<p>Counts: <a href="{{.Counter}}/api/counts">{{.Counter}}/api/counts</a></p>
</body></html>
`))

// main serves the sample pages on -addr, with counter images pointing at -counter.
func main() {
	addr := flag.String("addr", "127.0.0.1:8378", "listen address")
	counter := flag.String("counter", "http://127.0.0.1:8377", "base URL of the OxiTraffic daemon")
	flag.Parse()
	links := []string{"", "blog", "blog/hello", "blog/second", "about"}
	http.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		p := strings.Trim(r.URL.Path, "/")
		title, ok := pages[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page.Execute(w, map[string]any{"Title": title, "Path": p, "Counter": *counter, "Links": links})
	})
	fmt.Printf("sample site on http://%s\n", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
