package quantize

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/runtime"
)

// Opset 21 is the first whose DequantizeLinear takes int4 inputs and blocked scales
// (block_size); IR version 10 introduced the int4 element type.
const (
	OpsetBlockedQDQ = 21
	irInt4          = 10
)

// UpgradeOpset raises the default-domain opset of m to target (19 or 21), as the FP8 path
// does for 19: through 13 with the INT8 upgrade, the opset-19 conversions, then for 21 the
// operators whose meaning changed in 20 or 21 (GridSample's mode names, converted; DFT's axis
// input and GroupNormalization's per-channel scale, refused). Every node is checked before
// anything changes; the error names the first node in the way. shapes and rt serve the type
// probe the upgrade to 13 needs (ranks, for Softmax). It returns the opset m had.
func UpgradeOpset(m *onnx.Model, target int64, shapes map[string][]int64, rt runtime.Options) (int64, error) {
	if target != opsetFP8 && target != OpsetBlockedQDQ {
		return 0, fmt.Errorf("internal: opset upgrade to %d is not known", target)
	}
	cur := m.Opset("")
	ir := int64(irFP8)
	if target >= OpsetBlockedQDQ {
		ir = irInt4
	}
	if cur >= target {
		if m.Proto.GetIrVersion() < ir {
			m.Proto.IrVersion = proto.Int64(ir)
		}
		return cur, nil
	}
	e := newEditor(m)
	hasImport := false
	for _, o := range m.Proto.OpsetImport {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			hasImport = true
		}
	}
	if hasImport {
		for _, n := range e.g.Node {
			if !isDefaultDomain(n) {
				continue
			}
			var err error
			if cur < opsetFP8 {
				err = canUpgradeTo19(n, cur)
			}
			if err == nil && target > opsetFP8 {
				err = canUpgrade19To21(n, cur)
			}
			if err != nil {
				return cur, fmt.Errorf("opset %d needed and the model (opset %d) cannot be upgraded: %v", target, cur, err)
			}
		}
		if cur < opsetPerChannel {
			types, err := probeTypes(m, nil, shapes, rt)
			if err != nil {
				return cur, err
			}
			if _, err := upgradeOpset(e, opsetPerChannel, types.ranks()); err != nil {
				return cur, fmt.Errorf("opset %d needed and the model (opset %d) cannot be upgraded: %v", target, cur, err)
			}
		}
		for _, n := range e.g.Node {
			if !isDefaultDomain(n) {
				continue
			}
			if cur < opsetFP8 {
				convertTo19(e, n, max(cur, opsetPerChannel))
			}
			if target > opsetFP8 {
				convert19To21(n, max(cur, opsetFP8))
			}
		}
		for _, o := range m.Proto.OpsetImport {
			if d := o.GetDomain(); d == "" || d == "ai.onnx" {
				o.Version = proto.Int64(target)
			}
		}
	} else {
		m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(""), Version: proto.Int64(target)})
	}
	if m.Proto.GetIrVersion() < ir {
		m.Proto.IrVersion = proto.Int64(ir)
	}
	return cur, nil
}

// canUpgrade19To21 refuses the operators whose opset-20/21 versions mean something else
// than the opset-cur one and are not converted. Every other operator's later versions only
// added element types (int4, uint4, float8) or new operators, checked against the ONNX
// operator changelog.
func canUpgrade19To21(n *onnxpb.NodeProto, cur int64) error {
	switch op := n.GetOpType(); {
	case op == "DFT" && cur < 20:
		return fmt.Errorf("%s: DFT's axis became an input in opset 20 and is not converted", nodeLabel(n))
	case op == "GroupNormalization" && cur < 21:
		return fmt.Errorf("%s: GroupNormalization-21 takes per-channel scale and bias, not per-group; not converted", nodeLabel(n))
	}
	return nil
}

// convert19To21 rewrites n from its opset-cur (≥ 19) form to opset 21 in place: GridSample's
// interpolation modes were renamed in opset 20 (bilinear → linear, bicubic → cubic).
func convert19To21(n *onnxpb.NodeProto, cur int64) {
	if n.GetOpType() != "GridSample" || cur >= 20 {
		return
	}
	a := getAttr(n, "mode")
	if a == nil {
		// The opset-16 default was bilinear; opset 20's is linear: the same interpolation.
		return
	}
	switch string(a.S) {
	case "bilinear":
		a.S = []byte("linear")
	case "bicubic":
		a.S = []byte("cubic")
	}
}
