// Package quant is optimctl's format-independent quantization math: affine INT8/INT4
// parameters and rounding as ONNX defines them, streaming calibration statistics (min/max,
// histograms, entropy and percentile thresholds), and weight-only group quantization for
// linear layers (round-to-nearest, GPTQ, AWQ).
//
// Everything works on plain float32 slices with explicit row-major shapes; reading and
// writing ONNX or safetensors is someone else's job, and the byte layouts those formats
// store are in the sibling package pack.
//
// Conventions used throughout:
//   - A linear layer's weight W is [N, K] row-major: N outputs × K inputs, the orientation
//     of torch.nn.Linear.weight and of ONNX Runtime's MatMulNBits B. TransposeF32 converts
//     from the [K, N] orientation of an ONNX MatMul initializer or a GPTQ/AWQ checkpoint.
//   - Calibration activations X are [rows, K] row-major: one sample of the layer input per row.
//   - Group quantization stores unsigned codes q in [0, 2^bits) with a per-group scale s and
//     zero point z, and dequantizes as (q − z)·s, which is what MatMulNBits, GPTQ and AWQ read.
//   - Rounding is half to even everywhere (math.RoundToEven), as ONNX QuantizeLinear and
//     torch.round do, so codes agree with the reference tools on ties.
//
// Results are deterministic: the same inputs in the same order give bit-identical outputs,
// whatever the number of CPUs (parallel loops split rows, never a reduction order).
package quant
