package safetensors

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize bounds the JSON header, as the reference does (100 MB): it keeps a corrupt
// length prefix from making Open allocate and parse gigabytes.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key that holds free-form string metadata.
const metadataKey = "__metadata__"

// HeaderError reports a malformed file or index. File is the file at fault, as its path was
// given (a shard's path is joined to its index's folder); Tensor names the tensor at fault, or
// is "" when the fault is not in one tensor's entry. Callers can errors.As for it to tell a
// corrupt input from an I/O failure.
type HeaderError struct {
	File   string
	Tensor string
	Msg    string
}

func (e *HeaderError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, "tensor %q: ", e.Tensor)
	}
	b.WriteString(e.Msg)
	return b.String()
}

func headerErr(tensorName, format string, args ...any) *HeaderError {
	return &HeaderError{Tensor: tensorName, Msg: fmt.Sprintf(format, args...)}
}

// header is a parsed and validated header. Tensor offsets are relative to the data buffer.
type header struct {
	tensors  []TensorInfo      // file order: by offset, then size, then name
	metadata map[string]string // nil when the header has no __metadata__
}

// parseHeader parses the N header bytes of a file whose data buffer is bufLen bytes long and
// checks everything that can be checked without reading tensor data: valid UTF-8 JSON object,
// no duplicate keys, known dtypes, sizes that match dtype and shape, offsets inside the buffer,
// and tensors that tile the buffer exactly. Errors are *HeaderError without File set.
func parseHeader(b []byte, bufLen int64) (*header, error) {
	if !utf8.Valid(b) {
		return nil, headerErr("", "header is not valid UTF-8")
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, headerErr("", "header does not start with '{'")
	}
	s := &jsonScanner{b: b}
	h := &header{}
	seen := make(map[string]struct{})
	sawMetadata := false
	err := s.object(func(key string) error {
		if key == metadataKey {
			if sawMetadata {
				return headerErr("", "header has two %q entries", metadataKey)
			}
			sawMetadata = true
			md, err := parseMetadata(s)
			h.metadata = md
			return err
		}
		if key == "" {
			return headerErr("", "header has a tensor with an empty name")
		}
		if _, dup := seen[key]; dup {
			return headerErr(key, "duplicate tensor name")
		}
		seen[key] = struct{}{}
		t, err := parseTensorEntry(s, key, bufLen)
		if err != nil {
			return err
		}
		h.tensors = append(h.tensors, t)
		return nil
	})
	if err == nil && !s.atEnd() {
		err = s.fail("unexpected %q after the JSON object", clip(s.b[s.pos:]))
	}
	if err != nil {
		if se, ok := err.(*jsonSyntaxError); ok {
			return nil, headerErr("", "header is not valid JSON: %v", se)
		}
		return nil, err
	}
	slices.SortFunc(h.tensors, func(a, b TensorInfo) int {
		if c := cmp.Compare(a.Offset, b.Offset); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Size, b.Size); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	// The tensors must tile [0, bufLen): each starts where the previous one ended. The
	// reference rejects holes too; a hole is bytes no tensor owns, which a rewrite would drop.
	var pos int64
	var prev *TensorInfo
	for i := range h.tensors {
		t := &h.tensors[i]
		switch {
		case t.Offset < pos:
			return nil, headerErr(t.Name, "data_offsets [%d %d] overlap tensor %q [%d %d]",
				t.Offset, t.Offset+t.Size, prev.Name, prev.Offset, prev.Offset+prev.Size)
		case t.Offset > pos && prev == nil:
			return nil, headerErr(t.Name, "data_offsets [%d %d] leave bytes [%d %d) at the start of the data buffer unused",
				t.Offset, t.Offset+t.Size, pos, t.Offset)
		case t.Offset > pos:
			return nil, headerErr(t.Name, "data_offsets [%d %d] leave bytes [%d %d) after tensor %q unused",
				t.Offset, t.Offset+t.Size, pos, t.Offset, prev.Name)
		}
		pos = t.Offset + t.Size
		prev = t
	}
	if pos != bufLen {
		if prev == nil {
			return nil, headerErr("", "header lists no tensors but the data buffer has %d bytes", bufLen)
		}
		return nil, headerErr(prev.Name, "last tensor ends at byte %d of the %d-byte data buffer; bytes [%d %d) are unused",
			pos, bufLen, pos, bufLen)
	}
	return h, nil
}

// parseTensorEntry reads one {"dtype", "shape", "data_offsets"} entry. Unknown fields are
// skipped, as the reference skips them; keys match exactly.
func parseTensorEntry(s *jsonScanner, name string, bufLen int64) (TensorInfo, error) {
	if s.peek() != '{' {
		if _, err := s.raw(); err != nil {
			return TensorInfo{}, err
		}
		return TensorInfo{}, headerErr(name, "entry is not a JSON object")
	}
	var (
		dtype            string
		shape, offs      []int64
		hasD, hasS, hasO bool
		errD, errS, errO error
	)
	err := s.object(func(key string) error {
		var dup bool
		switch key {
		case "dtype":
			dup, hasD = hasD, true
			v, raw, ok, err := s.stringValue()
			if err != nil {
				return err
			}
			if dtype = v; !ok {
				errD = headerErr(name, "dtype must be a string, got %s", clip(raw))
			}
		case "shape":
			dup, hasS = hasS, true
			v, raw, ok, err := s.uintArray()
			if err != nil {
				return err
			}
			if shape = v; !ok {
				errS = headerErr(name, "shape: want an array of non-negative integers, got %s", clip(raw))
			}
		case "data_offsets":
			dup, hasO = hasO, true
			v, raw, ok, err := s.uintArray()
			if err != nil {
				return err
			}
			if offs = v; !ok {
				errO = headerErr(name, "data_offsets: want an array of non-negative integers, got %s", clip(raw))
			}
		default:
			return s.skip()
		}
		if dup {
			return headerErr(name, "duplicate field %q", key)
		}
		return nil
	})
	switch {
	case err != nil:
		return TensorInfo{}, err
	case !hasD:
		return TensorInfo{}, headerErr(name, `entry has no "dtype"`)
	case !hasS:
		return TensorInfo{}, headerErr(name, `entry has no "shape"`)
	case !hasO:
		return TensorInfo{}, headerErr(name, `entry has no "data_offsets"`)
	case errD != nil:
		return TensorInfo{}, errD
	case errS != nil:
		return TensorInfo{}, errS
	case errO != nil:
		return TensorInfo{}, errO
	case len(offs) != 2:
		return TensorInfo{}, headerErr(name, "data_offsets must be [begin, end], got %v", offs)
	}
	begin, end := offs[0], offs[1]
	if begin > end {
		return TensorInfo{}, headerErr(name, "data_offsets [%d %d] end before they begin", begin, end)
	}
	if end > bufLen {
		return TensorInfo{}, headerErr(name, "data_offsets [%d %d] run past the end of the %d-byte data buffer", begin, end, bufLen)
	}
	size, err := ByteSize(dtype, shape)
	if err != nil {
		return TensorInfo{}, headerErr(name, "%v", err)
	}
	if end-begin != size {
		return TensorInfo{}, headerErr(name, "data_offsets [%d %d] hold %d bytes but %s needs %d",
			begin, end, end-begin, formatShape(dtype, shape), size)
	}
	return TensorInfo{Name: name, DType: dtype, Shape: shape, Offset: begin, Size: size}, nil
}

// parseMetadata reads the "__metadata__" value: an object of strings, or null (absent).
func parseMetadata(s *jsonScanner) (map[string]string, error) {
	if s.peek() != '{' {
		raw, err := s.raw()
		if err != nil || string(raw) == "null" {
			return nil, err
		}
		return nil, headerErr("", "%s must be an object of strings, got %s", metadataKey, clip(raw))
	}
	md := make(map[string]string)
	err := s.object(func(key string) error {
		if _, dup := md[key]; dup {
			return headerErr("", "%s has a duplicate key %q", metadataKey, key)
		}
		v, raw, ok, err := s.stringValue()
		if err != nil {
			return err
		}
		if !ok {
			return headerErr("", "%s[%q] must be a string, got %s", metadataKey, key, clip(raw))
		}
		md[key] = v
		return nil
	})
	return md, err
}

// clip shortens raw JSON for an error message.
func clip(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}

// encodeHeader renders the header exactly as the reference serializer does: compact JSON,
// "__metadata__" first (keys sorted here; the reference's order is a HashMap's), then the
// tensors in the order given, strings escaped as serde_json escapes them, and spaces appended
// so that the data buffer starts on an 8-byte boundary. Offsets are relative to the buffer.
// A nil md omits "__metadata__"; an empty non-nil md writes "__metadata__":{}.
func encodeHeader(md map[string]string, tensors []TensorInfo) []byte {
	b := make([]byte, 0, 64+96*len(tensors))
	b = append(b, '{')
	if md != nil {
		b = appendJSONString(b, metadataKey)
		b = append(b, ':', '{')
		keys := make([]string, 0, len(md))
		for k := range md {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, md[k])
		}
		b = append(b, '}')
	}
	for i, t := range tensors {
		if i > 0 || md != nil {
			b = append(b, ',')
		}
		b = appendJSONString(b, t.Name)
		b = append(b, `:{"dtype":`...)
		b = appendJSONString(b, t.DType)
		b = append(b, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, t.Offset, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, t.Offset+t.Size, 10)
		b = append(b, ']', '}')
	}
	b = append(b, '}')
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	return b
}

// appendJSONString escapes as serde_json does: '"' and '\\', the short forms \b \f \n \r \t,
// other control bytes as \u00xx in lower-case hex, and everything else (including non-ASCII,
// DEL, '<', '>', '&', '/') verbatim. s must be valid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}
