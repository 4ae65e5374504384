package safetensors

import "testing"

func TestJSONScannerStrings(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{`"plain"`, "plain", ""},
		{`""`, "", ""},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t", ""},
		{`"\u00e9\u00E9é"`, "ééé", ""},
		{`"\ud83d\ude00"`, "\U0001F600", ""},
		{`"\u0000"`, "\x00", ""},
		{`"\ude00"`, "", "lone UTF-16 surrogate in string at byte 7"},
		{`"\ud83d"`, "", "lone UTF-16 surrogate in string at byte 7"},
		{`"\ud83d\u0041"`, "", "lone UTF-16 surrogate in string at byte 13"},
		{`"\u00g0"`, "", `invalid \u escape at byte 3`},
		{`"\u00`, "", "unexpected end of input at byte 5"},
		{`"abc\`, "", "unexpected end of input at byte 5"},
		{`abc`, "", "expected a string, found 'a' at byte 0"},
	}
	for _, tc := range tests {
		s := &jsonScanner{b: []byte(tc.in)}
		got, err := s.str()
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("str(%s) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || !s.atEnd() {
			t.Errorf("str(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestJSONScannerNumbers(t *testing.T) {
	tests := []struct {
		in  string
		ok  bool // valid JSON number consumed whole
		err string
	}{
		{"0", true, ""}, {"-0", true, ""}, {"12.5e-3", true, ""}, {"1E+9", true, ""},
		{"-", false, "unexpected end of input at byte 1"},
		{"1.", false, "unexpected end of input at byte 2"},
		{"1.e3", false, "expected a digit after '.' at byte 2"},
		{"1e", false, "unexpected end of input at byte 2"},
		{"+1", false, "expected a value, found '+' at byte 0"},
		{".5", false, "expected a value, found '.' at byte 0"},
	}
	for _, tc := range tests {
		s := &jsonScanner{b: []byte(tc.in)}
		_, err := s.number()
		if tc.ok {
			if err != nil || !s.atEnd() {
				t.Errorf("number(%s) = %v, stopped at %d", tc.in, err, s.pos)
			}
			continue
		}
		if err == nil || err.Error() != tc.err {
			t.Errorf("number(%s) error = %v, want %q", tc.in, err, tc.err)
		}
	}
}
