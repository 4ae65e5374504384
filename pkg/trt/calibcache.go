package trt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/fsutil"
)

// The calibration cache is TensorRT's text format, defined once in package calibration
// (WriteTensorRTCache / ReadTensorRTCache):
//
//	TRT-<version>-EntropyCalibration2
//	<tensor>: <8 hex digits: the big-endian bits of the float32 scale amax/127>
//
// build-trt reads one (--calib-cache without --calib), or receives one from TensorRT after
// calibrating and writes it; both pass through the checks below.

// calibAlgorithm is the header name of the calibrator shim.cc attaches
// (IInt8EntropyCalibrator2); TensorRT ignores a cache written by another calibrator.
const calibAlgorithm = "EntropyCalibration2"

// CheckCalibrationCache parses a cache and checks that TensorRT `version`
// (major·10000 + minor·100 + patch) with the entropy calibrator 2 will accept it; TensorRT
// itself would silently ignore a mismatched cache and find no data to calibrate with.
func CheckCalibrationCache(data []byte, version int) (tensors int, err error) {
	t, v, algo, err := calibration.ReadTensorRTCache(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	if algo != calibAlgorithm {
		return 0, fmt.Errorf("written by the %s calibrator; build-trt uses %s: regenerate it with "+
			"`optimctl calibrate MODEL --calib DATA --format tensorrt --trt-version %d -o CACHE`", algo, calibAlgorithm, version)
	}
	if version != 0 && v != version {
		return 0, fmt.Errorf("written for TensorRT %s (TRT-%d), this is TensorRT %s: regenerate it with "+
			"`optimctl calibrate MODEL --calib DATA --format tensorrt --trt-version %d -o CACHE`", VersionString(v), v, VersionString(version), version)
	}
	if len(t.Ranges) == 0 {
		return 0, errors.New("no tensor scales")
	}
	return len(t.Ranges), nil
}

// readCalibrationCache returns the cache at path after CheckCalibrationCache.
func readCalibrationCache(path string, version int) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("calibration cache %s does not exist: give --calib DATA to calibrate (and write it)", path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := CheckCalibrationCache(data, version); err != nil {
		return nil, fmt.Errorf("calibration cache %s: %w", path, err)
	}
	return data, nil
}

// writeCalibrationCache writes the cache TensorRT produced, atomically. It is checked first
// so that a format change in TensorRT is noticed (warn) before `optimctl calibrate` or a
// later build meets a cache it cannot read; it is written even then, because it is
// TensorRT's own output and TensorRT reads it.
func writeCalibrationCache(path string, data []byte, version int, warn func(string)) error {
	if _, err := CheckCalibrationCache(data, version); err != nil && warn != nil {
		warn(fmt.Sprintf("calibration cache from TensorRT written to %s does not read back: %v", path, err))
	}
	return fsutil.WriteFileAtomic(path, data)
}
