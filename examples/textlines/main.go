// Command textlines builds the labelled text-direction data set used by the demo and the
// examples: 4:1 crops of the printed lines of a real scan (scikit-image's bw_text.png from
// `make setup`), upright (label 0) and rotated 180° (label 1), for the PP-OCR direction
// classifier.
//
//	go run ./examples/textlines -src .cache/images/bw_text.png -out .cache/data/textlines
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/optimctl/optimctl/pkg/testassets"
)

func main() {
	src := flag.String("src", ".cache/images/bw_text.png", "scan of printed text (PNG)")
	out := flag.String("out", ".cache/data/textlines", "folder for the crops")
	labels := flag.String("labels", "", "labels file (default: OUT.labels.txt)")
	flag.Parse()
	if *labels == "" {
		*labels = *out + ".labels.txt"
	}
	n, err := testassets.TextLineSet(*src, *out, *labels)
	if err != nil {
		fmt.Fprintln(os.Stderr, "textlines:", err)
		os.Exit(1)
	}
	fmt.Printf("%d crops in %s, labels in %s\n", n, *out, *labels)
}
