package main

import (
	"errors"
	"net"
	"strings"
)

// asciiHost returns a host name as browsers send it: lower case, and each label that is not
// ASCII in punycode with the xn-- prefix (RFC 3492), so bücher.example is
// xn--bcher-kva.example. It lower-cases rather than applying all of IDNA's mapping, which
// is what owners write.
func asciiHost(h string) (string, error) {
	if len(h) > maxHostLen {
		return "", errors.New("host name too long")
	}
	h = strings.ToLower(h)
	ascii := true
	for i := range len(h) {
		ascii = ascii && h[i] < 0x80
	}
	if ascii {
		return h, nil
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		if isASCII(l) {
			continue
		}
		p, err := punycode(l)
		if err != nil {
			return "", err
		}
		labels[i] = "xn--" + p
	}
	return strings.Join(labels, "."), nil
}

// maxHostLen bounds the host names asciiHost encodes, in bytes: DNS allows 253 ASCII
// bytes, which a label of non-ASCII letters of 4 bytes each cannot exceed.
const maxHostLen = 4 * 253

// asciiHostPort is asciiHost for a host with an optional port, as in a URL.
func asciiHostPort(hp string) (string, error) {
	if isASCII(hp) {
		return strings.ToLower(hp), nil
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		host, port = hp, ""
	}
	a, err := asciiHost(host)
	if err != nil || port == "" {
		return a, err
	}
	return net.JoinHostPort(a, port), nil
}

// isASCII reports whether s holds only ASCII bytes.
func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// The parameters of punycode, RFC 3492 section 5.
const (
	punyBase        = 36
	punyTMin        = 1
	punyTMax        = 26
	punySkew        = 38
	punyDamp        = 700
	punyInitialBias = 72
	punyInitialN    = 128
)

// punycode encodes one label as RFC 3492 does, without the xn-- prefix.
func punycode(label string) (string, error) {
	runes := []rune(label)
	out := make([]byte, 0, len(label)+8)
	for _, r := range runes {
		if r < 0x80 {
			out = append(out, byte(r))
		}
	}
	basic := len(out)
	if basic > 0 {
		out = append(out, '-')
	}
	n, delta, bias := rune(punyInitialN), 0, punyInitialBias
	for h := basic; h < len(runes); {
		m := rune(0x7fffffff)
		for _, r := range runes {
			if r >= n && r < m {
				m = r
			}
		}
		if int(m-n) > (1<<31-1-delta)/(h+1) {
			return "", errors.New("host name label too long for punycode")
		}
		delta += int(m-n) * (h + 1)
		n = m
		for _, r := range runes {
			if r < n {
				delta++
			}
			if r != n {
				continue
			}
			q := delta
			for k := punyBase; ; k += punyBase {
				t := min(max(k-bias, punyTMin), punyTMax)
				if q < t {
					break
				}
				out = append(out, punyDigit(t+(q-t)%(punyBase-t)))
				q = (q - t) / (punyBase - t)
			}
			out = append(out, punyDigit(q))
			bias = punyAdapt(delta, h+1, h == basic)
			delta = 0
			h++
		}
		delta++
		n++
	}
	return string(out), nil
}

// punyDigit is the letter or digit of a punycode digit value, 0 to 35.
func punyDigit(d int) byte {
	if d < 26 {
		return byte('a' + d)
	}
	return byte('0' + d - 26)
}

// punyAdapt is RFC 3492's bias adaptation.
func punyAdapt(delta, points int, first bool) int {
	if first {
		delta /= punyDamp
	} else {
		delta /= 2
	}
	delta += delta / points
	k := 0
	for delta > (punyBase-punyTMin)*punyTMax/2 {
		delta /= punyBase - punyTMin
		k += punyBase
	}
	return k + (punyBase-punyTMin+1)*delta/(delta+punySkew)
}
