// Command gen writes bots_gen.go, the crawler patterns of the isbot npm package translated
// from JavaScript regular expressions to Go, and copies isbot's license beside them.
//
// Usage, from the repository root, with isbot's npm tarball unpacked in DIR:
//
//	go run ./bots/gen DIR
//
// DIR is the folder holding isbot's package.json, index.js and LICENSE (`npm pack isbot`
// makes a tarball whose folder is package/).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// main runs gen and exits 1 on its error.
func main() {
	out := flag.String("o", "bots_gen.go", "the Go file to write")
	lic := flag.String("license", "bots/LICENSE.isbot", "where to copy isbot's license")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: go run ./bots/gen [-o bots_gen.go] [-license bots/LICENSE.isbot] DIR")
		os.Exit(2)
	}
	if err := gen(flag.Arg(0), *out, *lic); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// pkgInfo is the part of isbot's package.json the header names.
type pkgInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	License string `json:"license"`
}

// gen reads the isbot package in dir, writes the Go file out and copies the license to lic.
func gen(dir, out, lic string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return fmt.Errorf("read package.json: %w", err)
	}
	var pkg pkgInfo
	if err := json.Unmarshal(raw, &pkg); err != nil {
		return fmt.Errorf("decode package.json: %w", err)
	}
	if pkg.Name != "isbot" {
		return fmt.Errorf("package.json names %q; want isbot", pkg.Name)
	}
	list, err := readPatterns(dir)
	if err != nil {
		return err
	}
	license, err := os.ReadFile(filepath.Join(dir, "LICENSE"))
	if err != nil {
		return fmt.Errorf("read LICENSE: %w", err)
	}

	var pats []pattern
	var dropped []string
	for _, js := range list {
		p, err := translate(js)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gen: dropped %q: %v\n", js, err)
			dropped = append(dropped, fmt.Sprintf("%s (%v)", js, err))
			continue
		}
		pats = append(pats, p)
	}

	src, err := render(pkg, lic, pats, dropped)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, src, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.WriteFile(lic, license, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", lic, err)
	}
	fmt.Fprintf(os.Stderr, "gen: %s: %d patterns of isbot %s, %d dropped\n", out, len(pats), pkg.Version, len(dropped))
	return nil
}

// readPatterns returns isbot's pattern list: src/patterns.json when the package ships it,
// else the patterns_default array that the bundler inlined into index.js. The list is
// checked against the full pattern the package compiles, so a change of layout fails here.
func readPatterns(dir string) ([]string, error) {
	var list []string
	if raw, err := os.ReadFile(filepath.Join(dir, "src", "patterns.json")); err == nil {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("decode src/patterns.json: %w", err)
		}
		return list, nil
	}
	js, err := os.ReadFile(filepath.Join(dir, "index.js"))
	if err != nil {
		return nil, fmt.Errorf("read index.js: %w", err)
	}
	arr, err := between(js, "var patterns_default = ", "];\n")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(append(arr, ']'), &list); err != nil {
		return nil, fmt.Errorf("decode patterns_default in index.js: %w", err)
	}
	full, err := between(js, "var fullPattern = ", ";\n")
	if err != nil {
		return nil, err
	}
	var joined string
	if err := json.Unmarshal(full, &joined); err != nil {
		return nil, fmt.Errorf("decode fullPattern in index.js: %w", err)
	}
	if joined != strings.Join(list, "|") {
		return nil, errors.New("index.js: fullPattern is not patterns_default joined by |")
	}
	return list, nil
}

// between returns the bytes of b after the first start and before the next end.
func between(b []byte, start, end string) ([]byte, error) {
	_, after, ok := bytes.Cut(b, []byte(start))
	if !ok {
		return nil, fmt.Errorf("index.js: %q not found", start)
	}
	v, _, ok := bytes.Cut(after, []byte(end))
	if !ok {
		return nil, fmt.Errorf("index.js: no %q after %q", end, start)
	}
	return v, nil
}

// pattern is one isbot pattern translated to Go, with what isBot needs to skip its regexp.
type pattern struct {
	js    string   // the JavaScript source
	re    string   // the Go regexp, ASCII case-insensitive; empty when exact
	lit   string   // lower-case literal every match contains
	at    string   // where lit must be: litAnywhere, litStart or litEnd
	exact bool     // a match of lit is a match of the pattern
	end   bool     // isbot's pattern holds $, the end of the text
	first *byteSet // the bytes a match can start with, for start-anchored patterns
	only  *byteSet // the bytes a match is made of, for start-anchored patterns
	last  *byteSet // the bytes a match can end with, unless at the end of the text
	once  *byteSet // the bytes a match holds at most once, for patterns anchored at both ends
	whole bool     // the pattern is anchored at both ends
	here  bool     // re is anchored and tried where lit stands
	// notBefore are lower-case literals that must not end just before lit (a lookbehind)
	notBefore []string
}

// byteSet is a set of bytes, as isBot's byteSet.
type byteSet [4]uint64

// add puts the bytes lo..hi into s; any rune past ASCII puts in every byte of UTF-8.
func (s *byteSet) add(lo, hi rune) {
	if hi >= 0x80 {
		for c := 0x80; c < 0x100; c++ {
			s[c>>6] |= 1 << (c & 63)
		}
		hi = 0x7f
	}
	for c := lo; c <= hi; c++ {
		s[c>>6] |= 1 << (c & 63)
	}
}

// foldLower adds to s the lower case of its upper-case letters, since isBot tests the
// sets on lower-cased bytes.
func (s *byteSet) foldLower() {
	for c := 'A'; c <= 'Z'; c++ {
		if s[c>>6]&(1<<(c&63)) != 0 {
			s.add(c+'a'-'A', c+'a'-'A')
		}
	}
}

// rewrites are isbot patterns written anew, meaning the same, in a form translate takes.
var rewrites = map[string]string{
	// news at the start or after a character other than g: not after g.
	`(?:^|[^g])news(?!sapphire)`: `(?<!g)news(?!sapphire)`,
}

// jsSpace is what \s matches in JavaScript, written for inside a Go character class.
const jsSpace = `\t\n\v\f\r \x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{feff}`

// translate turns one isbot pattern into a Go pattern. JavaScript and Go agree on the
// rest of isbot's syntax; what differs is translated here:
//   - a negative lookbehind (?<!a|b) at the start and a negative lookahead (?!a|b) at the
//     end, over plain literals, become alternations that spell out what may stand there
//     (see notPreceded and notFollowed);
//   - \s is JavaScript's larger set of spaces;
//   - the i flag folds ASCII letters only, as JavaScript's does without u, where Go's (?i)
//     would also let k match the Kelvin sign and s the long s.
//
// Any other lookaround, and . (whose line terminators differ), are errors.
func translate(js string) (pattern, error) {
	body := js
	if same, ok := rewrites[js]; ok {
		body = same
	}
	var before, after []string
	if rest, ok := strings.CutPrefix(body, "(?<!"); ok {
		alts, tail, err := lookaround(rest)
		if err != nil {
			return pattern{}, err
		}
		before, body = alts, tail
	}
	if i := strings.LastIndex(body, "(?!"); i >= 0 {
		inner, ok := strings.CutSuffix(body[i+len("(?!"):], ")")
		if !ok {
			return pattern{}, errors.New("lookahead not at the end")
		}
		inner = strings.TrimSuffix(strings.TrimPrefix(inner, "(?:"), ")")
		alts, tail, err := lookaround(inner + ")")
		if err != nil || tail != "" {
			return pattern{}, fmt.Errorf("lookahead: %v", err)
		}
		after, body = alts, body[:i]
	}
	if strings.Contains(body, "(?<") || strings.Contains(body, "(?=") || strings.Contains(body, "(?!") {
		return pattern{}, errors.New("lookaround inside the pattern")
	}
	body, err := jsEscapes(body)
	if err != nil {
		return pattern{}, err
	}
	core, err := syntax.Parse(body, syntax.Perl)
	if err != nil {
		return pattern{}, fmt.Errorf("parse: %w", err)
	}
	p := analyse(core.Simplify())
	p.js = js
	full := body
	switch {
	case p.here:
		// Tried where lit stands: the lookbehind is a test of the text before it.
		full = `^(?:` + body + `)`
		p.notBefore = before
	case before != nil:
		full = notPreceded(before) + full
		p.exact, p.first, p.last, p.once = false, nil, nil, nil
		if p.at == "litStart" {
			p.at = "litAnywhere"
		}
	}
	if after != nil {
		full += notFollowed(after)
		p.exact, p.last, p.once = false, nil, nil
	}
	if p.exact {
		p.here, p.last, p.once = false, nil, nil
		return p, nil
	}
	re, err := syntax.Parse(full, syntax.Perl)
	if err != nil {
		return pattern{}, fmt.Errorf("parse translation %q: %w", full, err)
	}
	p.re = foldASCII(re.Simplify()).String()
	if _, err := regexp.Compile(p.re); err != nil {
		return pattern{}, fmt.Errorf("compile %q: %w", p.re, err)
	}
	return p, nil
}

// lookaround splits "a|b)rest" into the literals a and b and rest.
func lookaround(s string) (alts []string, rest string, err error) {
	inner, rest, ok := strings.Cut(s, ")")
	if !ok {
		return nil, "", errors.New("unclosed lookaround")
	}
	for _, a := range strings.Split(inner, "|") {
		lit := strings.ReplaceAll(a, `\/`, "/")
		if a == "" || strings.ContainsAny(lit, `\[](){}*+?.^$`) {
			return nil, "", fmt.Errorf("lookaround over %q, not a plain literal", a)
		}
		alts = append(alts, lit)
	}
	return alts, rest, nil
}

// jsEscapes rewrites the JavaScript escapes whose meaning differs in Go and rejects
// an unescaped dot.
func jsEscapes(s string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			switch e := s[i]; e {
			case 's':
				if inClass {
					b.WriteString(jsSpace)
				} else {
					b.WriteString("[" + jsSpace + "]")
				}
			case 'S':
				return "", errors.New(`\S is not translated`)
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
			continue
		case c == '[' && !inClass:
			inClass = true
		case c == ']' && inClass:
			inClass = false
		case c == '.' && !inClass:
			return "", errors.New("unescaped . is not translated")
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// notPreceded returns a Go pattern that matches the text just before a position that is
// not preceded by any of lits: the start of the text, a character that ends none of
// them, or, recursively, a character that does, preceded by what may precede it.
func notPreceded(lits []string) string {
	var rev []string
	for _, l := range lits {
		r := []rune(l)
		slices.Reverse(r)
		rev = append(rev, string(r))
	}
	return "(?:" + complement(rev, "^", func(sub string, c rune) string { return sub + quote(c) }) + ")"
}

// notFollowed returns a Go pattern that matches after a position that is not followed by
// any of lits: the end of the text, a character that starts none of them, or,
// recursively, a character that does, followed by what may follow it.
func notFollowed(lits []string) string {
	return "(?:" + complement(lits, "$", func(sub string, c rune) string { return quote(c) + sub }) + ")"
}

// complement builds the alternation of notPreceded and notFollowed over the words, read
// from the side of the position: edge is the text's edge, join puts a character next to
// the alternation that may lie beyond it.
func complement(words []string, edge string, join func(sub string, c rune) string) string {
	next := map[rune][]string{}
	var firsts []rune
	for _, w := range words {
		r := []rune(w)
		if _, ok := next[r[0]]; !ok {
			firsts = append(firsts, r[0])
		}
		next[r[0]] = append(next[r[0]], string(r[1:]))
	}
	slices.Sort(firsts)
	alts := []string{edge}
	var class strings.Builder
	for _, c := range firsts {
		class.WriteString(quote(c))
	}
	alts = append(alts, "[^"+class.String()+"]")
	for _, c := range firsts {
		rests := next[c]
		if slices.Contains(rests, "") {
			continue // a whole word stands there: nothing is allowed beyond
		}
		alts = append(alts, join("(?:"+complement(rests, edge, join)+")", c))
	}
	return strings.Join(alts, "|")
}

// quote returns c escaped for a Go pattern, in or out of a class.
func quote(c rune) string {
	return regexp.QuoteMeta(string(c))
}

// analyse finds in a parsed pattern the literal, anchors and byte sets isBot filters on.
func analyse(re *syntax.Regexp) pattern {
	items := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		items = re.Sub
	}
	var p pattern
	p.at = "litAnywhere"
	start := items[0].Op == syntax.OpBeginText
	end := items[len(items)-1].Op == syntax.OpEndText
	p.end = hasOp(re, syntax.OpEndText)
	// The longest literal; of equals, one next to an anchor, since isBot tests that in place.
	best, bestScore := -1, 0
	for i, it := range items {
		if it.Op != syntax.OpLiteral || !isASCII(it.Rune) {
			continue
		}
		score := 2 * len(it.Rune)
		if start && i == 1 || end && i == len(items)-2 {
			score++
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	if best >= 0 {
		p.lit = strings.ToLower(string(items[best].Rune))
		switch {
		case start && best == 1:
			p.at = "litStart"
		case end && best == len(items)-2:
			p.at = "litEnd"
		}
		rest := len(items) - 1
		if start {
			rest--
		}
		if end {
			rest--
		}
		p.exact = rest == 0 && !(start && end)
		p.here = best == 0 && len(p.lit) >= 2
	}
	if start && p.at != "litStart" && len(items) > 1 {
		if s, ok := firstBytes(items[1]); ok {
			s.foldLower()
			p.first = &s
		}
	}
	if start {
		var s byteSet
		alphabet(re, &s)
		s.foldLower()
		p.only = &s
		p.whole = end
		if l, ok := lastBytes(items[len(items)-1]); ok && !end {
			l.foldLower()
			p.last = &l
		}
		if end {
			n := counts(re)
			var once byteSet
			for c, k := range n {
				if k == 1 {
					once.add(rune(c), rune(c))
				}
			}
			if once != (byteSet{}) {
				p.once = &once
			}
		}
	}
	return p
}

// hasOp reports whether re or any of its parts is op.
func hasOp(re *syntax.Regexp, op syntax.Op) bool {
	if re.Op == op {
		return true
	}
	for _, sub := range re.Sub {
		if hasOp(sub, op) {
			return true
		}
	}
	return false
}

// isASCII reports whether every rune of r is ASCII.
func isASCII(r []rune) bool {
	for _, c := range r {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// firstBytes returns the bytes a match of re can start with, or false when re can match
// the empty string or is too complex to say.
func firstBytes(re *syntax.Regexp) (byteSet, bool) {
	var s byteSet
	switch re.Op {
	case syntax.OpLiteral:
		s.add(re.Rune[0], re.Rune[0])
		return s, true
	case syntax.OpCharClass:
		for i := 0; i < len(re.Rune); i += 2 {
			s.add(re.Rune[i], re.Rune[i+1])
		}
		return s, true
	case syntax.OpPlus, syntax.OpCapture:
		return firstBytes(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return firstBytes(re.Sub[0])
		}
	}
	return s, false
}

// lastBytes returns the bytes a match of re can end with when it does not end at the end
// of the text, or false when re can end otherwise or is too complex to say.
func lastBytes(re *syntax.Regexp) (byteSet, bool) {
	var s byteSet
	switch re.Op {
	case syntax.OpEndText:
		return s, true
	case syntax.OpLiteral:
		c := re.Rune[len(re.Rune)-1]
		s.add(c, c)
		return s, true
	case syntax.OpCharClass:
		for i := 0; i < len(re.Rune); i += 2 {
			s.add(re.Rune[i], re.Rune[i+1])
		}
		return s, true
	case syntax.OpCapture:
		return lastBytes(re.Sub[0])
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			t, ok := lastBytes(sub)
			if !ok {
				return s, false
			}
			for i := range s {
				s[i] |= t[i]
			}
		}
		return s, true
	}
	return s, false
}

// counts returns how many times a match of re can hold each ASCII byte, lower-cased:
// 0, 1, or 2 for more than once.
func counts(re *syntax.Regexp) [128]uint8 {
	var n [128]uint8
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			if c < 128 {
				c = unicode.ToLower(c)
				n[c] = min(n[c]+1, 2)
			}
		}
	case syntax.OpCharClass:
		for i := 0; i < len(re.Rune); i += 2 {
			for c := re.Rune[i]; c <= re.Rune[i+1] && c < 128; c++ {
				n[unicode.ToLower(c)] = 1
			}
		}
	case syntax.OpCapture, syntax.OpQuest:
		n = counts(re.Sub[0])
	case syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			m := counts(sub)
			for c := range n {
				if re.Op == syntax.OpConcat {
					n[c] = min(n[c]+m[c], 2)
				} else {
					n[c] = max(n[c], m[c])
				}
			}
		}
	case syntax.OpRepeat:
		if re.Max == 1 {
			n = counts(re.Sub[0])
			break
		}
		fallthrough
	case syntax.OpStar, syntax.OpPlus:
		m := counts(re.Sub[0])
		for c := range n {
			n[c] = 2 * min(m[c], 1)
		}
	default:
		for c := range n {
			n[c] = 2
		}
	}
	return n
}

// alphabet adds to s every byte that a match of re can consist of.
func alphabet(re *syntax.Regexp, s *byteSet) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			s.add(c, c)
		}
	case syntax.OpCharClass:
		for i := 0; i < len(re.Rune); i += 2 {
			s.add(re.Rune[i], re.Rune[i+1])
		}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		s.add(0, unicode.MaxRune)
	}
	for _, sub := range re.Sub {
		alphabet(sub, s)
	}
}

// foldASCII makes re match ASCII letters of either case, as JavaScript's i flag does:
// a letter becomes a class of both cases, and a class gains the other case of its letters
// (a negated class loses both).
func foldASCII(re *syntax.Regexp) *syntax.Regexp {
	for i, sub := range re.Sub {
		re.Sub[i] = foldASCII(sub)
	}
	switch re.Op {
	case syntax.OpLiteral:
		var parts []*syntax.Regexp
		for _, c := range re.Rune {
			if u := unicode.ToUpper(c); 'a' <= c && c <= 'z' {
				parts = append(parts, &syntax.Regexp{Op: syntax.OpCharClass, Rune: []rune{u, u, c, c}})
			} else {
				parts = append(parts, &syntax.Regexp{Op: syntax.OpLiteral, Rune: []rune{c}})
			}
		}
		if len(parts) == 1 {
			return parts[0]
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: parts}
	case syntax.OpCharClass:
		re.Rune = foldClass(re.Rune)
	}
	return re
}

// foldClass returns the class r closed under ASCII case. A class that holds the last rune
// came from a negation ([^g]); JavaScript folds what it excludes, so that one is
// complemented, folded and complemented back.
func foldClass(r []rune) []rune {
	negated := len(r) > 0 && r[len(r)-1] == unicode.MaxRune
	if negated {
		r = negate(r)
	}
	var in [128]bool
	for i := 0; i < len(r); i += 2 {
		for c := r[i]; c <= r[i+1] && c < 128; c++ {
			in[c] = true
		}
	}
	for c := 'a'; c <= 'z'; c++ {
		u := c - 'a' + 'A'
		if in[c] || in[u] {
			r = append(r, c, c, u, u)
		}
	}
	r = normalize(r)
	if negated {
		r = negate(r)
	}
	return r
}

// normalize sorts and merges the ranges of a class.
func normalize(r []rune) []rune {
	type span struct{ lo, hi rune }
	var sp []span
	for i := 0; i < len(r); i += 2 {
		sp = append(sp, span{r[i], r[i+1]})
	}
	slices.SortFunc(sp, func(a, b span) int { return int(a.lo - b.lo) })
	var out []rune
	for _, s := range sp {
		if n := len(out); n > 0 && s.lo <= out[n-1]+1 {
			out[n-1] = max(out[n-1], s.hi)
			continue
		}
		out = append(out, s.lo, s.hi)
	}
	return out
}

// negate returns the complement of the sorted, merged class r.
func negate(r []rune) []rune {
	r = normalize(r)
	var out []rune
	next := rune(0)
	for i := 0; i < len(r); i += 2 {
		if r[i] > next {
			out = append(out, next, r[i]-1)
		}
		next = r[i+1] + 1
	}
	if next <= unicode.MaxRune {
		out = append(out, next, unicode.MaxRune)
	}
	return out
}

// render returns the formatted Go source of bots_gen.go.
func render(pkg pkgInfo, lic string, pats []pattern, dropped []string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by \"go run ./bots/gen\" from the npm package %s %s; DO NOT EDIT.\n\n", pkg.Name, pkg.Version)
	fmt.Fprintf(&b, "// Source: the npm package %s, version %s (https://github.com/omrilotan/isbot),\n", pkg.Name, pkg.Version)
	fmt.Fprintf(&b, "// license %s: see %s. %d of its %d patterns are here.\n", pkg.License, lic, len(pats), len(pats)+len(dropped))
	b.WriteString("//\n// Translated from JavaScript by hand-written rules in bots/gen: lookbehinds and lookaheads\n")
	b.WriteString("// over literals are spelled out as alternations, \\s is JavaScript's set of spaces, and\n")
	b.WriteString("// letters fold in ASCII only. Known difference: a repetition counts runes where\n")
	b.WriteString("// JavaScript counts UTF-16 units (^[^ ]{50,}$ on astral characters).\n")
	if len(dropped) == 0 {
		b.WriteString("//\n// Dropped patterns: none.\n")
	} else {
		b.WriteString("//\n// Dropped patterns, which Go cannot run as translated:\n")
		for _, d := range dropped {
			fmt.Fprintf(&b, "//   - %s\n", d)
		}
	}
	b.WriteString("\npackage main\n\n")
	fmt.Fprintf(&b, "// isbotVersion is the version of the npm package isbot that isbotPatterns come from.\nconst isbotVersion = %q\n\n", pkg.Version)
	b.WriteString("// isbotPatterns are isbot's crawler patterns in its order, translated to Go.\nvar isbotPatterns = []botPattern{\n")
	for _, p := range pats {
		fmt.Fprintf(&b, "\t{js: %s", goString(p.js))
		if p.lit != "" {
			fmt.Fprintf(&b, ", lit: %q, at: %s", p.lit, p.at)
		}
		if p.exact {
			b.WriteString(", exact: true")
		} else {
			fmt.Fprintf(&b, ", re: %s", goString(p.re))
		}
		if p.end {
			b.WriteString(", end: true")
		}
		if p.whole {
			b.WriteString(", whole: true")
		}
		if p.here {
			b.WriteString(", here: true")
		}
		if p.notBefore != nil {
			fmt.Fprintf(&b, ", notBefore: %#v", p.notBefore)
		}
		if p.first != nil {
			fmt.Fprintf(&b, ", first: %s", setLit(*p.first))
		}
		if p.only != nil {
			fmt.Fprintf(&b, ", only: %s", setLit(*p.only))
		}
		if p.last != nil {
			fmt.Fprintf(&b, ", last: %s", setLit(*p.last))
		}
		if p.once != nil {
			fmt.Fprintf(&b, ", once: %s", setLit(*p.once))
		}
		b.WriteString("},\n")
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format generated source: %w\n%s", err, b.Bytes())
	}
	return src, nil
}

// goString returns s as a Go raw string literal when it can be one, else quoted.
func goString(s string) string {
	if !strings.Contains(s, "`") && strconv.CanBackquote(s) {
		return "`" + s + "`"
	}
	return strconv.Quote(s)
}

// setLit returns s as a Go composite literal of isBot's byteSet.
func setLit(s byteSet) string {
	return fmt.Sprintf("&byteSet{%#016x, %#016x, %#016x, %#016x}", s[0], s[1], s[2], s[3])
}
