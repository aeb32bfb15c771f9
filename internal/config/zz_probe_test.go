package config

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestZZProbe(t *testing.T) {
	base := Default()
	base.Models = []Model{{Name: "m", Backends: []Backend{{URL: "http://127.0.0.1:9"}}}}
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	var walk func(v reflect.Value, path string)
	try := func(path string, set func()) string {
		return ""
	}
	_ = try
	walk = func(v reflect.Value, path string) {
		t2 := v.Type()
		for i := range t2.NumField() {
			f := t2.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			p := path + "." + name
			fv := v.Field(i)
			switch {
			case f.Type == reflect.TypeFor[Duration]() || f.Type == reflect.TypeFor[ByteSize]() || f.Type.Kind() == reflect.Int || f.Type.Kind() == reflect.Int64:
				old := fv.Int()
				fv.SetInt(-1)
				if err := base.Validate(); err == nil {
					t.Logf("NEG accepted: %s (%s)", p, f.Type)
				}
				fv.SetInt(old)
			case f.Type.Kind() == reflect.Float64:
				old := fv.Float()
				for _, x := range []float64{-1, math.NaN(), math.Inf(1)} {
					fv.SetFloat(x)
					if err := base.Validate(); err == nil {
						t.Logf("%v accepted: %s", x, p)
					}
				}
				fv.SetFloat(old)
			case f.Type.Kind() == reflect.Struct:
				walk(fv, p)
			}
		}
	}
	walk(reflect.ValueOf(&base).Elem(), "")
}
