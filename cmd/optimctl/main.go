// Command optimctl makes trained models smaller and faster for serving and proves, with
// numbers, that they still give the same answers. Each subcommand is a thin layer:
// flags → an options struct → one call into pkg/.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
