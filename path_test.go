package main

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestPathAfter checks the path rules: normalisation and every reason for 400.
func TestPathAfter(t *testing.T) {
	for _, c := range []struct {
		escaped, want string
		invalid       bool
	}{
		{"/call", "", false},
		{"/call/", "", false},
		{"/call/blog", "blog", false},
		{"/call/blog/", "blog", false},
		{"/call//blog//", "blog", false},
		{"/call/a%20b", "a b", false},
		{"/call/a%2Fb", "a/b", false},
		{"/call/blog%2F%2Fpost-1", "blog/post-1", false},
		{"/call/blog/%2Fpost-1", "blog/post-1", false},
		{"/call/blog%2F/%2F%2Fpost-1%2F", "blog/post-1", false},
		{"/call/%2F%2Fblog", "blog", false},
		{"/call/blog/index.html", "blog/index.html", false}, // another URL, maybe another page
		{"/call/Blog", "Blog", false},                       // paths are case-sensitive
		{"/call/a%2F%2E%2E%2Fb", "", true},
		{"/call/%C3%BC", "ü", false},
		{"/call/" + strings.Repeat("x", 2048), strings.Repeat("x", 2048), false},
		{"/call/" + strings.Repeat("x", 2049), "", true},
		{"/call/%ff", "", true},
		{"/call/a%00", "", true},
		{"/call/a%0a", "", true},
		{"/call/a%c2%85", "", true}, // U+0085, a C1 control character
		{"/call/%2e%2e", "", true},
		{"/call/a/./b", "", true},
		{"/call/%zz", "", true},
		{"/call/a%", "", true},
	} {
		got, err := pathAfter(c.escaped, "/call")
		if c.invalid != errors.Is(err, errInvalidPath) || (!c.invalid && got != c.want) {
			t.Errorf("pathAfter(%.50q) = %q, %v; want %q, invalid %v", c.escaped, got, err, c.want, c.invalid)
		}
	}
}

// FuzzPath checks that every path that is accepted obeys the rules of what may be stored.
func FuzzPath(f *testing.F) {
	for _, s := range []string{"/call/blog", "/call/a%2Fb/", "/call/%ff", "/call/%2e%2e", "/call//x", "/call/%00", "/call"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, escaped string) {
		p, err := pathAfter(escaped, "/call")
		if err != nil {
			return
		}
		switch {
		case len(p) > maxPathLen, !utf8.ValidString(p), strings.IndexFunc(p, unicode.IsControl) >= 0,
			strings.HasPrefix(p, "/"), strings.HasSuffix(p, "/"), strings.Contains(p, "//"):
			t.Fatalf("pathAfter(%q) = %q; want it refused", escaped, p)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("pathAfter(%q) = %q with a dot segment", escaped, p)
			}
		}
		if again, err := cleanPath(p); err != nil || again != p {
			t.Fatalf("cleanPath(%q) = %q, %v; want it unchanged", p, again, err)
		}
	})
}
