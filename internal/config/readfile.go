package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxFileBytes bounds a config file, checked before it is parsed: the
// annotated reference (examples/sluice.yaml) is about 40 KB, a config
// with hundreds of models a few hundred; the YAML library holds a file's
// whole node tree, several times its size, and a file of unknown keys
// costs a suggestion each. A file past it is a mistake (a log or a
// dataset named in --config), refused naming its size.
const MaxFileBytes = 4 << 20

// ErrFileTooLarge is a config file over MaxFileBytes.
var ErrFileTooLarge = errors.New("config file too large")

// readFile reads the config file at path, refusing one over MaxFileBytes
// before reading it (a regular file, by its size) or once that much was
// read (a pipe or a device, whose size is not known ahead).
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%w: %d bytes, over the bound of %d bytes (4 MiB)", ErrFileTooLarge, st.Size(), MaxFileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: more than %d bytes, over the bound of %d bytes (4 MiB)", ErrFileTooLarge, MaxFileBytes, MaxFileBytes)
	}
	return data, nil
}

// MaxNodes bounds a config file's YAML nodes (keys, values, lists and
// maps), estimated before it is parsed (nodeEstimate): the library holds
// every node of the tree at once, ~200 bytes each, so a file within
// MaxFileBytes written densely ("[1,1,1,...]", 2 bytes a node) took
// ~500 MB to parse. The annotated reference (examples/sluice.yaml) is
// ~1,400 by the estimate, a config of 100 models of 10 backends ~12,000.
const MaxNodes = 1 << 19

// ErrTooManyNodes is a config file over MaxNodes.
var ErrTooManyNodes = errors.New("config file too dense")

// nodeEstimate bounds the YAML nodes of data from above, in practice: a
// node starts a line, or follows a flow separator (',', '[', '{'), a
// mapping's ':' or a list's '-'. Comments and quoted text are counted
// too (an overestimate, far below MaxNodes for any real file); one
// bytes.Count per byte kind, vectorized, ~1 ms for 4 MiB.
func nodeEstimate(data []byte) int {
	n := 0
	for _, c := range []byte("\n,[{:-") {
		n += bytes.Count(data, []byte{c})
	}
	return n
}

// checkDensity refuses data with more than MaxNodes by nodeEstimate,
// before it is parsed.
func checkDensity(data []byte) error {
	if n := nodeEstimate(data); n > MaxNodes {
		return fmt.Errorf("%w: about %d YAML nodes (lines, commas, colons, dashes, brackets), over the bound of %d; "+
			"a real config has a few thousand, and parsing holds each node (~200 bytes)", ErrTooManyNodes, n, MaxNodes)
	}
	return nil
}
