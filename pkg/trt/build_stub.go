//go:build !tensorrt && !trtfake

package trt

import "context"

// Available reports whether this binary can build engines (the tensorrt build tag).
const Available = false

// LibraryVersion is the TensorRT library's version; without the tag there is none.
func LibraryVersion() (int, error) { return 0, ErrNotBuilt }

// Build needs the tensorrt build tag; this build says how to get it.
func Build(ctx context.Context, o Options) (*Report, error) { return nil, ErrNotBuilt }
