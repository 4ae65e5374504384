package passes

import (
	"bytes"
	"hash/maphash"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
)

// DedupeInitializers makes readers of identical constants (same type, shape and bytes)
// share the first of them; the copies become unused and dead-code drops them.
var DedupeInitializers = &Pass{
	Name:    "dedupe-initializers",
	Doc:     "merge initializers with identical type, shape and contents",
	Default: true,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			type key struct {
				dt   int32
				dims string
				size int
			}
			groups := map[key][]*onnxpb.TensorProto{}
			var order []key
			for _, t := range g.g.Initializer {
				name := t.GetName()
				if !g.isConst(name) || g.pinned[name] || g.inputs[name] || len(g.liveConsumers(name)) == 0 {
					continue
				}
				v := g.constant(name)
				if v == nil {
					continue
				}
				k := key{t.GetDataType(), dimsKey(t.Dims), len(v.Data)}
				if _, ok := groups[k]; !ok {
					order = append(order, k)
				}
				groups[k] = append(groups[k], t)
			}
			seed := maphash.MakeSeed()
			count := 0
			for _, k := range order {
				ts := groups[k]
				if len(ts) < 2 {
					continue
				}
				byHash := map[uint64][]*onnxpb.TensorProto{}
				for _, t := range ts {
					h := maphash.Bytes(seed, g.constant(t.GetName()).Data)
					kept := false
					for _, u := range byHash[h] {
						if bytes.Equal(g.constant(u.GetName()).Data, g.constant(t.GetName()).Data) {
							g.replaceUses(t.GetName(), u.GetName())
							count++
							kept = true
							break
						}
					}
					if !kept {
						byHash[h] = append(byHash[h], t)
					}
				}
			}
			return count, nil
		})
	},
}

func dimsKey(d []int64) string {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(s, ",")
}

// CSE merges nodes that compute the same thing: same operator, attributes and inputs.
var CSE = &Pass{
	Name:    "cse",
	Doc:     "merge duplicate nodes (common subexpression elimination)",
	Default: true,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			seen := map[string]*onnxpb.NodeProto{}
			count := 0
			for _, n := range g.g.Node {
				if g.removed[n] || hasSubgraph(n) || nonFoldable[n.GetOpType()] && n.GetOpType() != "Constant" || len(n.Output) == 0 {
					continue
				}
				k, ok := nodeKey(n)
				if !ok {
					continue
				}
				first, dup := seen[k]
				if !dup {
					seen[k] = n
					continue
				}
				pinned := false
				for _, o := range n.Output {
					pinned = pinned || g.pinned[o]
				}
				if pinned {
					continue
				}
				for i, o := range n.Output {
					if o != "" {
						g.replaceUses(o, first.Output[i])
					}
				}
				g.remove(n)
				count++
			}
			return count, nil
		})
	},
}

// nodeKey identifies what a node computes: domain, op, inputs, number of outputs, and its
// attributes encoded deterministically in name order.
func nodeKey(n *onnxpb.NodeProto) (string, bool) {
	attrs := append([]*onnxpb.AttributeProto(nil), n.Attribute...)
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].GetName() < attrs[j].GetName() })
	var b strings.Builder
	b.WriteString(n.GetDomain())
	b.WriteByte(0)
	b.WriteString(n.GetOpType())
	b.WriteByte(0)
	b.WriteString(n.GetOverload())
	for _, in := range n.Input {
		b.WriteByte(0)
		b.WriteString(in)
	}
	b.WriteByte(1)
	b.WriteString(strconv.Itoa(len(n.Output)))
	for i, o := range n.Output {
		if o == "" {
			b.WriteString("/" + strconv.Itoa(i))
		}
	}
	opt := proto.MarshalOptions{Deterministic: true}
	for _, a := range attrs {
		enc, err := opt.Marshal(a)
		if err != nil {
			return "", false
		}
		b.WriteByte(2)
		b.Write(enc)
	}
	return b.String(), true
}

// DeadCode removes nodes whose outputs nothing reads, initializers nothing reads (graph
// inputs with a default value are left alone), and value_info of names that no longer exist.
var DeadCode = &Pass{
	Name:    "dead-code",
	Doc:     "remove unused nodes, unused initializers and stale value_info",
	Default: true,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			count := 0
			for i := len(g.g.Node) - 1; i >= 0; i-- {
				n := g.g.Node[i]
				if g.removed[n] || len(n.Output) == 0 {
					continue
				}
				live := false
				for _, o := range n.Output {
					live = live || (o != "" && g.used(o))
				}
				if !live {
					g.remove(n)
					count++
				}
			}
			var inits []*onnxpb.TensorProto
			for _, t := range g.g.Initializer {
				name := t.GetName()
				if g.used(name) || g.inputs[name] {
					inits = append(inits, t)
					continue
				}
				count++
				g.changed = true
			}
			g.g.Initializer = inits
			// value_info of values that are gone.
			exists := map[string]bool{}
			for _, n := range g.nodes() {
				for _, o := range n.Output {
					exists[o] = true
				}
			}
			var vis []*onnxpb.ValueInfoProto
			for _, vi := range g.g.ValueInfo {
				if exists[vi.GetName()] {
					vis = append(vis, vi)
				} else {
					g.changed = true
				}
			}
			g.g.ValueInfo = vis
			return count, nil
		})
	},
}
