package calibration

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// arrays streams samples from .npz and .npy files, one after another. An .npz is a zip of
// .npy members, stored or deflated; each member is read sequentially through its own small
// buffer, one row per sample, so memory is one sample plus a decompressor per input
// whatever the file size. (Random access would only work for stored members; deflate
// streams must be read in order anyway, and samples are consumed in order.)
type arrays struct {
	name  string
	files []arrayFileInfo
	ins   []tensor.Spec
	first *arrayFile // headers of the first file (closed)
	total int

	cur  int        // index of the file being read
	open *arrayFile // nil between files
	row  int        // next row of the open file
}

// arrayFileInfo is what Open learned about a file from its headers.
type arrayFileInfo struct {
	path string
	rows int
}

// arrayFile is an open .npz/.npy with one positioned reader per model input.
type arrayFile struct {
	path    string
	closers []io.Closer
	members []*member
	rows    int
}

type member struct {
	key       string // array name, for errors
	spec      tensor.Spec
	hdr       npyHeader
	r         *bufio.Reader
	fed       []int64 // shape of one sample as fed to the model
	rowBytes  int
	batchAxis bool
}

const memberBufSize = 64 << 10

// openArrays reads every file's headers up front: the sample count is known and every
// signature mismatch surfaces at Open, not halfway through a calibration run.
func openArrays(name string, paths []string, ins []tensor.Spec) (*arrays, error) {
	a := &arrays{name: name, ins: ins}
	for _, p := range paths {
		f, err := openArrayFile(p, ins)
		if err != nil {
			return nil, err
		}
		f.close()
		if a.first == nil {
			a.first = f
		}
		// Every file must agree on whether an array carries the batch axis, or samples
		// from different files would have different ranks.
		for i, m := range f.members {
			if m0 := a.first.members[i]; m.batchAxis != m0.batchAxis {
				return nil, fmt.Errorf("%s: input %q: array rank differs from %s (%s against %s)",
					p, m.spec.Name, filepath.Base(a.first.path), formatShape(m.hdr.shape), formatShape(m0.hdr.shape))
			}
		}
		a.files = append(a.files, arrayFileInfo{path: p, rows: f.rows})
		a.total += f.rows
	}
	return a, nil
}

var positionalKey = regexp.MustCompile(`^arr_[0-9]+$`)

// openArrayFile opens path, maps its arrays to model inputs and checks their headers.
func openArrayFile(path string, ins []tensor.Spec) (_ *arrayFile, err error) {
	f := &arrayFile{path: path}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	type source struct {
		key  string
		open func() (io.ReadCloser, error)
	}
	byInput := map[string]source{}
	if strings.EqualFold(filepath.Ext(path), ".npy") {
		if len(ins) != 1 {
			return nil, fmt.Errorf("%s: a .npy file holds one array, but the model has %d inputs (%s); use an .npz keyed by input name", path, len(ins), inputNames(ins))
		}
		byInput[ins[0].Name] = source{key: ins[0].Name, open: func() (io.ReadCloser, error) { return os.Open(path) }}
	} else {
		zr, err := zip.OpenReader(path)
		if err != nil {
			return nil, fmt.Errorf("%s: not a readable .npz: %v", path, err)
		}
		f.closers = append(f.closers, zr)
		names := map[string]bool{}
		for _, in := range ins {
			names[in.Name] = true
		}
		var keys []string
		files := map[string]*zip.File{}
		for _, zf := range zr.File {
			if strings.HasSuffix(zf.Name, "/") {
				continue
			}
			if !strings.HasSuffix(zf.Name, ".npy") {
				return nil, fmt.Errorf("%s: member %q is not a .npy array", path, zf.Name)
			}
			k := strings.TrimSuffix(zf.Name, ".npy")
			keys = append(keys, k)
			files[k] = zf
		}
		// np.savez(path, a, b) names arrays arr_0, arr_1, ...: map those by position, but only
		// when no key is an input name, so a named file is never reinterpreted.
		positional := len(keys) > 0
		for _, k := range keys {
			if names[k] || !positionalKey.MatchString(k) {
				positional = false
			}
		}
		for _, k := range keys {
			input := k
			if positional {
				var i int
				fmt.Sscanf(k, "arr_%d", &i)
				if i >= len(ins) {
					return nil, fmt.Errorf("%s: array %q has no model input at position %d (inputs: %s)", path, k, i, inputNames(ins))
				}
				input = ins[i].Name
			} else if !names[k] {
				return nil, fmt.Errorf("%s: key %q is not a model input (inputs: %s)", path, k, inputNames(ins))
			}
			zf := files[k]
			byInput[input] = source{key: k, open: zf.Open}
		}
		for _, in := range ins {
			if _, ok := byInput[in.Name]; !ok {
				return nil, fmt.Errorf("%s: no array for input %q (keys: %s)", path, in.Name, strings.Join(keys, ", "))
			}
		}
	}
	f.rows = -1
	for _, in := range ins {
		src := byInput[in.Name]
		rc, err := src.open()
		if err != nil {
			return nil, fmt.Errorf("%s: array %q: %v", path, src.key, err)
		}
		f.closers = append(f.closers, rc)
		m := &member{key: src.key, spec: in, r: bufio.NewReaderSize(rc, memberBufSize)}
		if m.hdr, err = readNPYHeader(m.r); err != nil {
			return nil, fmt.Errorf("%s: array %q: %v", path, src.key, err)
		}
		if err := m.check(path); err != nil {
			return nil, err
		}
		rows := int(m.hdr.shape[0])
		if f.rows >= 0 && rows != f.rows {
			return nil, fmt.Errorf("%s: arrays disagree on the number of samples: %q has %d, %q has %d",
				path, f.members[0].key, f.rows, m.key, rows)
		}
		f.rows = rows
		f.members = append(f.members, m)
	}
	return f, nil
}

// check matches the array's header against the input. Axis 0 of the array counts samples;
// the rest is one sample, fed as [1,...] when the array has the model's rank (the model's
// axis 0 is then the batch axis), or as is when the array has one axis more.
func (m *member) check(path string) error {
	in, a := m.spec, m.hdr.shape
	if !convertible(m.hdr.dtype, in.DType) {
		return dtypeError(path, in.Name, m.hdr.dtype, in.DType)
	}
	k := len(in.Shape)
	switch {
	case len(a) == k && k >= 1:
		m.fed = append([]int64{1}, a[1:]...)
		m.batchAxis = true
	case len(a) == k+1:
		m.fed = append([]int64(nil), a[1:]...)
	default:
		return fmt.Errorf("%s: input %q: shape %s has rank %d, model wants %d (%s); axis 0 of the array counts samples",
			path, in.Name, formatShape(a), len(a), k, formatSpec(in))
	}
	for d, v := range m.fed {
		if (d == 0 && m.batchAxis) || in.Shape[d] < 0 || in.Shape[d] == v {
			continue
		}
		return fmt.Errorf("%s: input %q: shape %s gives samples of %s, model wants %s (dimension %d is %d, want %d)",
			path, in.Name, formatShape(a), formatShape(m.fed), formatSpec(in), d, v, in.Shape[d])
	}
	m.rowBytes = int(m.hdr.dtype.ByteSize(tensor.NumElements(a[1:])))
	return nil
}

func (f *arrayFile) close() {
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i].Close()
	}
	f.closers = nil
	for _, m := range f.members {
		m.r = nil // release the buffer; a closed file keeps only its headers
	}
}

func (a *arrays) next() (Sample, string, error) {
	for {
		if a.open == nil {
			if a.cur >= len(a.files) {
				return nil, "", io.EOF
			}
			info := a.files[a.cur]
			f, err := openArrayFile(info.path, a.ins)
			if err != nil {
				return nil, "", err
			}
			if f.rows != info.rows {
				f.close()
				return nil, "", fmt.Errorf("%s: changed since it was opened (%d samples, was %d)", info.path, f.rows, info.rows)
			}
			a.open, a.row = f, 0
		}
		if a.row < a.open.rows {
			break
		}
		err := a.open.finish()
		a.open.close()
		a.open = nil
		a.cur++
		if err != nil {
			return nil, "", err
		}
	}
	f := a.open
	where := fmt.Sprintf("%s (sample %d)", f.path, a.row)
	smp := make(Sample, len(f.members))
	for _, m := range f.members {
		buf := make([]byte, m.rowBytes)
		if _, err := io.ReadFull(m.r, buf); err != nil {
			return nil, "", fmt.Errorf("%s: array %q: sample %d: %v", f.path, m.key, a.row, readErr(err))
		}
		if m.hdr.bigEndian {
			swapBytes(buf, m.hdr.elemSize())
		}
		data, err := convertData(m.hdr.dtype, m.spec.DType, buf)
		if err != nil {
			return nil, "", fmt.Errorf("%s: input %q: sample %d: %v", f.path, m.spec.Name, a.row, err)
		}
		smp[m.spec.Name] = &tensor.Tensor{DType: m.spec.DType, Shape: append([]int64(nil), m.fed...), Data: data}
	}
	a.row++
	return smp, where, nil
}

// finish reads one byte past the last row: it must be the end, which also makes the zip
// reader verify the member's CRC, so a corrupt file is reported, not silently fed.
func (f *arrayFile) finish() error {
	for _, m := range f.members {
		_, err := m.r.ReadByte()
		switch {
		case err == nil:
			return fmt.Errorf("%s: array %q: more data than its shape %s holds", f.path, m.key, formatShape(m.hdr.shape))
		case err != io.EOF:
			return fmt.Errorf("%s: array %q: %v", f.path, m.key, readErr(err))
		}
	}
	return nil
}

func readErr(err error) error {
	switch {
	case errors.Is(err, zip.ErrChecksum):
		return errors.New("checksum mismatch (corrupt file)")
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return errors.New("truncated data (unexpected end of file)")
	}
	return err
}

func (a *arrays) count() int { return a.total }
func (a *arrays) batchAxes() map[string]bool {
	axes := map[string]bool{}
	for _, m := range a.first.members {
		axes[m.spec.Name] = m.batchAxis
	}
	return axes
}

func (a *arrays) reset() error {
	a.close()
	a.cur, a.row = 0, 0
	return nil
}

func (a *arrays) close() error {
	if a.open != nil {
		a.open.close()
		a.open = nil
	}
	return nil
}
