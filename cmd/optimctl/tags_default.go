//go:build !tensorrt

package main

// tensorrtBuild reports whether this binary was built with the tensorrt tag.
const tensorrtBuild = false
