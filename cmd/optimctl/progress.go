package main

import (
	"github.com/schollz/progressbar/v3"
)

// newProgress returns a callback drawing a progress bar on stderr. Callers only use it when
// stderr is a terminal: in CI logs a bar is a stream of carriage returns.
func newProgress(g *globals, what string, total int) func(done, total int) {
	var bar *progressbar.ProgressBar
	return func(done, n int) {
		if bar == nil {
			if n <= 0 {
				n = total
			}
			bar = progressbar.NewOptions(n,
				progressbar.OptionSetWriter(g.stderr),
				progressbar.OptionSetDescription(what),
				progressbar.OptionShowCount(),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionThrottle(100e6),
			)
		}
		bar.Set(done)
	}
}
