module github.com/optimctl/optimctl

go 1.26.8

require (
	github.com/planetscale/vtprotobuf v0.6.0
	github.com/x448/float16 v0.8.4
	google.golang.org/protobuf v1.36.12
)

tool (
	github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto
	google.golang.org/protobuf/cmd/protoc-gen-go
)
