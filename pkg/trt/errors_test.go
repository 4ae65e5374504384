package trt

import (
	"strings"
	"testing"
)

func TestParseErrorText(t *testing.T) {
	e := &ParseError{Model: "m.onnx", Errors: []NodeError{
		{Code: 8, Node: 3, Name: "conv1", Op: "Conv", Desc: "no importer for op\n"},
		{Code: 5, Node: -1, Desc: "graph has a cycle"},
		{Code: 42, Node: 0, Op: "Foo", Desc: "x"},
	}}
	want := `m.onnx: TensorRT's ONNX parser failed with 3 error(s): node 3 "conv1" (Conv): UNSUPPORTED_NODE: no importer for op; INVALID_GRAPH: graph has a cycle; node 0 (Foo): code 42: x`
	if got := e.Error(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if strings.Contains(e.Error(), "\n") {
		t.Fatal("multi-line error")
	}
}
