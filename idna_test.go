package main

import "testing"

// TestASCIIHost checks host names against their punycode forms from RFC 3492 and browsers.
func TestASCIIHost(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"blog.example.com", "blog.example.com"},
		{"Blog.Example.COM", "blog.example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.example", "xn--bcher-kva.example"},
		{"münchen.de", "xn--mnchen-3ya.de"},
		{"例え.jp", "xn--r8jz45g.jp"},
		{"www.färgbolaget.nu", "www.xn--frgbolaget-q5a.nu"},
		{"правительство.рф", "xn--80aealotwbjpid2k.xn--p1ai"},
	} {
		if got, err := asciiHost(c.in); err != nil || got != c.want {
			t.Errorf("asciiHost(%q) = %q, %v; want %q, nil", c.in, got, err, c.want)
		}
	}
	if got, err := asciiHostPort("bücher.example:8080"); err != nil || got != "xn--bcher-kva.example:8080" {
		t.Errorf("asciiHostPort(bücher.example:8080) = %q, %v; want xn--bcher-kva.example:8080, nil", got, err)
	}
}
