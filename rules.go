package main

import (
	"net/http"
	"net/netip"
	"strings"
)

// The rules of what a /call is besides a crawler: only an image load, from a page of the
// tracked site, of a visitor who is not the owner, counts.

// clientAddr returns the client's full address: the TCP peer, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For address that is not itself a trusted
// proxy. IPv4-mapped IPv6 is IPv4. The zero address when the peer cannot be read.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	v := peer.Addr().Unmap()
	if isTrusted(v, trusted) {
		v = forwardedFor(r.Header.Values("X-Forwarded-For"), trusted, v)
	}
	return v
}

// visitorOf returns who a client address counts as: the address itself, or for IPv6 its
// /64, since privacy extensions rotate the rest.
func visitorOf(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// notImage reports whether the browser says that the request is not an image load (a
// navigation, a fetch): Sec-Fetch-Dest is present and is not "image". Without the header
// (older browsers, other clients) nothing is known.
func notImage(h http.Header) bool {
	v := h.Get("Sec-Fetch-Dest")
	return v != "" && !strings.EqualFold(v, "image")
}

// otherSite reports whether the Referer names a page of a host that is not one of hosts
// (lower-case ASCII, as asciiHost makes them): another site embeds the counter. Without a Referer nothing is known. A
// leading "www." is ignored on both sides, since a site is commonly served under both
// names; a Referer that names no host counts as another site.
func otherSite(h http.Header, hosts []string) bool {
	ref := h.Get("Referer")
	if ref == "" {
		return false
	}
	host, ok := refererHost(ref)
	if !ok {
		return true
	}
	if !isASCII(host) {
		// Browsers send punycode; a client that sends the name as written is compared the same way.
		if host, ok = asciiOr(host); !ok {
			return true
		}
	}
	host = trimWWW(host)
	for _, a := range hosts {
		if strings.EqualFold(host, trimWWW(a)) {
			return false
		}
	}
	return true
}

// refererHost returns the host of an absolute URL, without user info and port, without
// allocating; ok is false when there is none.
func refererHost(u string) (string, bool) {
	i := strings.Index(u, "://")
	if i <= 0 {
		return "", false
	}
	rest := u[i+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		rest = rest[:j]
	}
	if j := strings.LastIndexByte(rest, '@'); j >= 0 {
		rest = rest[j+1:]
	}
	if strings.HasPrefix(rest, "[") {
		if j := strings.IndexByte(rest, ']'); j > 0 {
			return rest[1:j], true
		}
		return "", false
	}
	if j := strings.IndexByte(rest, ':'); j >= 0 {
		rest = rest[:j]
	}
	rest = strings.TrimSuffix(rest, ".")
	return rest, rest != ""
}

// asciiOr returns asciiHost of a host, or false when it has no ASCII form.
func asciiOr(host string) (string, bool) {
	a, err := asciiHost(host)
	return a, err == nil
}

// trimWWW removes a leading "www." in any case.
func trimWWW(host string) string {
	if len(host) > 4 && strings.EqualFold(host[:4], "www.") {
		return host[4:]
	}
	return host
}
