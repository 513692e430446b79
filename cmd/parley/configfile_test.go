package main

import (
	"os"
	"reflect"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestConfigFileListsEveryDefault: configs/parley.yaml documents every
// setting, each with the default the code uses, and nothing else. Reading
// it must change nothing.
func TestConfigFileListsEveryDefault(t *testing.T) {
	b, err := os.ReadFile("../../configs/parley.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var defaults config
	for _, s := range defaults.settings() {
		if err := set(s, s.def); err != nil {
			t.Fatalf("default of %s: %v", s.key, err)
		}
	}
	fromFile := defaults
	if err := applyYAML(fromFile.settings(), b); err != nil {
		t.Fatalf("configs/parley.yaml: %v", err)
	}
	if !reflect.DeepEqual(fromFile, defaults) {
		for _, s := range defaults.settings() {
			for _, f := range fromFile.settings() {
				if f.key == s.key && !reflect.DeepEqual(f.field.Interface(), s.field.Interface()) {
					t.Errorf("%s: the file says %v, the default is %v", s.key, f.field.Interface(), s.field.Interface())
				}
			}
		}
	}

	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var inFile []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, c := range m {
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, c)
			}
			return
		}
		inFile = append(inFile, prefix)
	}
	walk("", doc)
	for _, s := range defaults.settings() {
		if !slices.Contains(inFile, s.key) {
			t.Errorf("configs/parley.yaml does not list %s (default %q)", s.key, s.def)
		}
	}
}
