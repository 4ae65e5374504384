package calibration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// The .npy layout (numpy's format.py, versions 1-3):
//
//	"\x93NUMPY" major minor  header-length (uint16 LE in v1, uint32 LE in v2/v3)
//	header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (n, ...), }
//	        padded with spaces and '\n' so the data starts 16- or 64-byte aligned
//	data:   the elements, C order when fortran_order is False
//
// The header is parsed here rather than with npyio because npyio rejects float16 ('<f2'),
// trusts the header length (a corrupt file could ask for 4 GiB) and can panic on a header
// without a newline; the data itself is read row by row, so no array reader is needed.
const (
	npyMagic        = "\x93NUMPY"
	npyMaxHeaderLen = 1 << 20 // numpy writes a few hundred bytes; anything near this is corrupt
)

// npyHeader is what a .npy header says about its array.
type npyHeader struct {
	descr     string
	dtype     tensor.DType
	bigEndian bool
	shape     []int64
}

// elemSize is the stored byte width of one element.
func (h npyHeader) elemSize() int { return h.dtype.Bits() / 8 }

// readNPYHeader consumes the header and leaves r at the first data byte.
func readNPYHeader(r io.Reader) (npyHeader, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return npyHeader{}, fmt.Errorf("not a .npy array: %w", eofAsUnexpected(err))
	}
	if string(pre[:6]) != npyMagic {
		return npyHeader{}, errors.New("not a .npy array (bad magic)")
	}
	var n uint32
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return npyHeader{}, fmt.Errorf("truncated .npy header: %w", eofAsUnexpected(err))
		}
		n = uint32(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return npyHeader{}, fmt.Errorf("truncated .npy header: %w", eofAsUnexpected(err))
		}
		n = binary.LittleEndian.Uint32(b[:])
	default:
		return npyHeader{}, fmt.Errorf("unsupported .npy version %d.%d", pre[6], pre[7])
	}
	if n > npyMaxHeaderLen {
		return npyHeader{}, fmt.Errorf("corrupt .npy header (length %d)", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return npyHeader{}, fmt.Errorf("truncated .npy header: %w", eofAsUnexpected(err))
	}
	return parseNPYDict(string(buf))
}

func eofAsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func parseNPYDict(s string) (npyHeader, error) {
	var h npyHeader
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return h, fmt.Errorf("corrupt .npy header %q", s)
	}
	descr, ok := dictValue(s, "descr")
	if !ok {
		return h, fmt.Errorf("corrupt .npy header %q: no 'descr'", s)
	}
	if !isQuoted(descr) {
		return h, fmt.Errorf("unsupported .npy dtype %s (structured arrays cannot feed a model input)", descr)
	}
	h.descr = descr[1 : len(descr)-1]
	var err error
	if h.dtype, h.bigEndian, err = npyDType(h.descr); err != nil {
		return h, err
	}
	fortran, ok := dictValue(s, "fortran_order")
	if !ok || (fortran != "False" && fortran != "True") {
		return h, fmt.Errorf("corrupt .npy header %q: bad 'fortran_order'", s)
	}
	shape, ok := dictValue(s, "shape")
	if !ok || !strings.HasPrefix(shape, "(") || !strings.HasSuffix(shape, ")") {
		return h, fmt.Errorf("corrupt .npy header %q: bad 'shape'", s)
	}
	h.shape = []int64{}
	for _, f := range strings.Split(shape[1:len(shape)-1], ",") {
		f = strings.TrimSuffix(strings.TrimSpace(f), "L") // Python 2 longs
		if f == "" {
			continue
		}
		d, err := strconv.ParseInt(f, 10, 64)
		if err != nil || d < 0 {
			return h, fmt.Errorf("corrupt .npy header %q: bad dimension %q", s, f)
		}
		h.shape = append(h.shape, d)
	}
	if fortran == "True" && len(h.shape) > 1 {
		// Row-by-row streaming needs C order; converting costs the whole array in memory.
		return h, errors.New("Fortran-ordered array; save it with np.ascontiguousarray")
	}
	return h, nil
}

func isQuoted(v string) bool {
	return len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0]
}

// dictValue returns the raw literal after 'key': in a Python dict literal: a quoted string,
// a parenthesised tuple, a bracketed list, or a bare word.
func dictValue(s, key string) (string, bool) {
	i := strings.Index(s, "'"+key+"'")
	if i < 0 {
		i = strings.Index(s, `"`+key+`"`)
	}
	if i < 0 {
		return "", false
	}
	rest := strings.TrimLeft(s[i+len(key)+2:], " ")
	if !strings.HasPrefix(rest, ":") {
		return "", false
	}
	rest = strings.TrimLeft(rest[1:], " ")
	if rest == "" {
		return "", false
	}
	var end int
	switch c := rest[0]; c {
	case '\'', '"':
		end = strings.IndexByte(rest[1:], c) + 2
	case '(':
		end = strings.IndexByte(rest, ')') + 1
	case '[':
		end = strings.LastIndexByte(rest, ']') + 1
	default:
		end = strings.IndexAny(rest, ",}")
	}
	if end <= 0 {
		return "", false
	}
	return strings.TrimSpace(rest[:end]), true
}

// npyDType maps a numpy type string ('<f4', '|u1', '>i8', ...) to an element type.
func npyDType(descr string) (tensor.DType, bool, error) {
	if descr == "" {
		return 0, false, errors.New("empty .npy dtype")
	}
	big := false
	body := descr
	switch descr[0] {
	case '<', '|', '=':
		body = descr[1:]
	case '>':
		big, body = true, descr[1:]
	}
	dt, ok := map[string]tensor.DType{
		"b1": tensor.Bool, "u1": tensor.Uint8, "i1": tensor.Int8, "u2": tensor.Uint16,
		"i2": tensor.Int16, "u4": tensor.Uint32, "i4": tensor.Int32, "u8": tensor.Uint64,
		"i8": tensor.Int64, "f2": tensor.Float16, "f4": tensor.Float32, "f8": tensor.Float64,
		"?": tensor.Bool,
	}[body]
	if !ok {
		return 0, false, fmt.Errorf("unsupported .npy dtype %q (want bool, integers or float16/32/64)", descr)
	}
	return dt, big, nil
}
