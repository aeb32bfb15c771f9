//go:build !race

package h1client

const raceBuild = false
