package trt

import (
	"fmt"
	"strings"
)

// parserCodes name nvonnxparser::ErrorCode values (the same in 10.x and 11.x).
var parserCodes = [...]string{
	"SUCCESS", "INTERNAL_ERROR", "MEM_ALLOC_FAILED", "MODEL_DESERIALIZE_FAILED", "INVALID_VALUE",
	"INVALID_GRAPH", "INVALID_NODE", "UNSUPPORTED_GRAPH", "UNSUPPORTED_NODE", "UNSUPPORTED_NODE_ATTR",
	"UNSUPPORTED_NODE_INPUT", "UNSUPPORTED_NODE_DATATYPE", "UNSUPPORTED_NODE_DYNAMIC", "UNSUPPORTED_NODE_SHAPE",
	"REFIT_FAILED",
}

// NodeError is one error of TensorRT's ONNX parser.
type NodeError struct {
	Code int    // nvonnxparser::ErrorCode
	Node int    // node index in the graph, -1 when the error is not about a node
	Name string // node name ("" when none)
	Op   string // node operator ("" when none)
	Desc string
}

// CodeName is the parser's name for the error code, e.g. UNSUPPORTED_NODE.
func (e NodeError) CodeName() string {
	if e.Code >= 0 && e.Code < len(parserCodes) {
		return parserCodes[e.Code]
	}
	return fmt.Sprintf("code %d", e.Code)
}

func (e NodeError) String() string {
	var b strings.Builder
	if e.Node >= 0 {
		fmt.Fprintf(&b, "node %d", e.Node)
		if e.Name != "" {
			fmt.Fprintf(&b, " %q", e.Name)
		}
		if e.Op != "" {
			fmt.Fprintf(&b, " (%s)", e.Op)
		}
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s: %s", e.CodeName(), strings.TrimSpace(e.Desc))
	return b.String()
}

// ParseError is the failure of TensorRT's ONNX parser, with every error it reported.
type ParseError struct {
	Model  string
	Errors []NodeError
}

// Error is one line, as the command-line contract wants: all errors, separated by "; ".
func (e *ParseError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, n := range e.Errors {
		parts[i] = n.String()
	}
	return fmt.Sprintf("%s: TensorRT's ONNX parser failed with %d error(s): %s", e.Model, len(e.Errors), strings.Join(parts, "; "))
}
