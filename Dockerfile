# Multi-stage image: a static-as-possible optimctl binary plus the ONNX Runtime library.
# Build with `make image`.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o /out/optimctl ./cmd/optimctl

FROM node:20-bookworm-slim AS ort
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN npm pack --silent onnxruntime-node@1.30.0 \
 && echo "6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75  onnxruntime-node-1.30.0.tgz" | sha256sum -c \
 && mkdir -p /out && tar -xzf onnxruntime-node-1.30.0.tgz -C /out --strip-components=5 package/bin/napi-v6/linux/x64/libonnxruntime.so.1

FROM debian:bookworm-slim
COPY --from=build /out/optimctl /usr/local/bin/optimctl
COPY --from=ort /out/libonnxruntime.so.1 /usr/local/lib/optimctl/libonnxruntime.so.1
ENV OPTIMCTL_ORT_LIB=/usr/local/lib/optimctl/libonnxruntime.so.1
ENTRYPOINT ["optimctl"]
