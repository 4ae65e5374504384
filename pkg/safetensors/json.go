package safetensors

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonScanner reads JSON (RFC 8259) from a byte slice, one value at a time, for the header
// and index parsers. It exists because encoding/json cannot do what they need cheaply: it
// keeps the last of two duplicate keys, matches keys case-insensitively, turns null into 0,
// and costs ~70 allocations per tensor entry through Decoder.Token (0.5 s and 320 MB of garbage
// for a 100,000-tensor header). This scanner allocates only the strings it returns.
//
// Input must already be valid UTF-8 (callers check it once). Nesting deeper than
// maxJSONDepth is refused, so a header of a million '[' cannot exhaust the stack.
type jsonScanner struct {
	b     []byte
	pos   int
	depth int
}

const maxJSONDepth = 128

// jsonSyntaxError is malformed JSON, with the byte offset where it was noticed.
type jsonSyntaxError struct {
	msg string
	pos int
}

func (e *jsonSyntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.pos) }

func (s *jsonScanner) fail(format string, args ...any) error {
	if s.pos >= len(s.b) {
		return &jsonSyntaxError{"unexpected end of input", s.pos}
	}
	return &jsonSyntaxError{fmt.Sprintf(format, args...), s.pos}
}

func (s *jsonScanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, 0 at the end.
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.pos >= len(s.b) {
		return 0
	}
	return s.b[s.pos]
}

func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		return s.fail("expected %q, found %q", c, s.b[min(s.pos, len(s.b)-1)])
	}
	s.pos++
	return nil
}

// atEnd reports whether only whitespace is left.
func (s *jsonScanner) atEnd() bool {
	s.ws()
	return s.pos == len(s.b)
}

// object reads an object, calling member for each key; member must consume the value.
func (s *jsonScanner) object(member func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.depth++; s.depth > maxJSONDepth {
		return s.fail("nesting deeper than %d", maxJSONDepth)
	}
	defer func() { s.depth-- }()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or '}', found %q", s.b[min(s.pos, len(s.b)-1)])
		}
	}
}

// array reads an array, calling elem for each element; elem must consume it.
func (s *jsonScanner) array(elem func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.depth++; s.depth > maxJSONDepth {
		return s.fail("nesting deeper than %d", maxJSONDepth)
	}
	defer func() { s.depth-- }()
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or ']', found %q", s.b[min(s.pos, len(s.b)-1)])
		}
	}
}

// str reads a string. Escapes are decoded; a lone UTF-16 surrogate is refused, as serde does.
func (s *jsonScanner) str() (string, error) {
	if s.peek() != '"' {
		return "", s.fail("expected a string, found %q", s.b[min(s.pos, len(s.b)-1)])
	}
	s.pos++
	start := s.pos
	for s.pos < len(s.b) {
		c := s.b[s.pos]
		if c == '"' {
			out := string(s.b[start:s.pos])
			s.pos++
			return out, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", s.fail("control character %#02x in string", c)
		}
		s.pos++
	}
	buf := append([]byte(nil), s.b[start:s.pos]...)
	for s.pos < len(s.b) {
		c := s.b[s.pos]
		switch {
		case c == '"':
			s.pos++
			return string(buf), nil
		case c < 0x20:
			return "", s.fail("control character %#02x in string", c)
		case c != '\\':
			buf = append(buf, c)
			s.pos++
			continue
		}
		s.pos++
		if s.pos >= len(s.b) {
			break
		}
		e := s.b[s.pos]
		s.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, err := s.hex4()
			if err != nil {
				return "", err
			}
			if utf16.IsSurrogate(r) {
				if r >= 0xdc00 || !bytes.HasPrefix(s.b[s.pos:], []byte(`\u`)) {
					return "", s.fail("lone UTF-16 surrogate in string")
				}
				s.pos += 2
				lo, err := s.hex4()
				if err != nil {
					return "", err
				}
				if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
					return "", s.fail("lone UTF-16 surrogate in string")
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			s.pos -= 2
			return "", s.fail("invalid escape '\\%c' in string", e)
		}
	}
	s.pos = len(s.b)
	return "", s.fail("")
}

func (s *jsonScanner) hex4() (rune, error) {
	if s.pos+4 > len(s.b) {
		s.pos = len(s.b)
		return 0, s.fail("")
	}
	var r rune
	for _, c := range s.b[s.pos : s.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, s.fail("invalid \\u escape")
		}
	}
	s.pos += 4
	return r, nil
}

// number reads a number and returns its text.
func (s *jsonScanner) number() ([]byte, error) {
	s.ws()
	start := s.pos
	digits := func() int {
		n := 0
		for s.pos < len(s.b) && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.pos < len(s.b) && s.b[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos >= len(s.b):
		return nil, s.fail("")
	case s.b[s.pos] == '0':
		s.pos++
	case s.b[s.pos] >= '1' && s.b[s.pos] <= '9':
		digits()
	default:
		return nil, s.fail("expected a value, found %q", s.b[s.pos])
	}
	if s.pos < len(s.b) && s.b[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return nil, s.fail("expected a digit after '.'")
		}
	}
	if s.pos < len(s.b) && (s.b[s.pos] == 'e' || s.b[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.b) && (s.b[s.pos] == '+' || s.b[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return nil, s.fail("expected a digit in the exponent")
		}
	}
	return s.b[start:s.pos], nil
}

// skip reads and discards one value of any kind.
func (s *jsonScanner) skip() error {
	switch c := s.peek(); c {
	case '{':
		return s.object(func(string) error { return s.skip() })
	case '[':
		return s.array(s.skip)
	case '"':
		_, err := s.str()
		return err
	case 't', 'f', 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.b[s.pos:], []byte(lit)) {
				s.pos += len(lit)
				return nil
			}
		}
		return s.fail("expected a value, found %q", c)
	default:
		_, err := s.number()
		return err
	}
}

// raw reads one value of any kind and returns its text, for messages and pass-through.
func (s *jsonScanner) raw() ([]byte, error) {
	s.ws()
	start := s.pos
	if err := s.skip(); err != nil {
		return nil, err
	}
	return s.b[start:s.pos], nil
}

// stringValue reads a value that should be a string. ok is false, with the value's text in
// raw, when it is valid JSON of another kind; err is set only for malformed JSON.
func (s *jsonScanner) stringValue() (v string, raw []byte, ok bool, err error) {
	if s.peek() == '"' {
		v, err = s.str()
		return v, nil, err == nil, err
	}
	raw, err = s.raw()
	return "", raw, false, err
}

// uintArray reads a value that should be an array of non-negative integers fitting in int64.
// Elements are taken from their literal text, so 1.0, 1e3, "1" and null are refused.
func (s *jsonScanner) uintArray() (v []int64, raw []byte, ok bool, err error) {
	s.ws()
	start := s.pos
	if s.peek() != '[' {
		raw, err = s.raw()
		return nil, raw, false, err
	}
	ok = true
	v = []int64{}
	err = s.array(func() error {
		if c := s.peek(); c < '0' || c > '9' {
			ok = false
			return s.skip()
		}
		text, err := s.number()
		if err != nil {
			return err
		}
		n, perr := strconv.ParseInt(string(text), 10, 64)
		if perr != nil {
			ok = false
		}
		v = append(v, n)
		return nil
	})
	return v, s.b[start:s.pos], ok, err
}
