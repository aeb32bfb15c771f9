package config

import (
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
