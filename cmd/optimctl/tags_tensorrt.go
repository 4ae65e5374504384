//go:build tensorrt

package main

const tensorrtBuild = true
