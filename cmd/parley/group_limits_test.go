package main

import (
	"io"
	"strings"
	"testing"

	"github.com/parleychat/parley/groups"
)

// TestConfigGroupLimits: the limits on groups created and members added per
// user reach groups.Limits with the defaults the file documents, the
// environment overrides them, and out-of-range values are refused with the
// setting's name.
func TestConfigGroupLimits(t *testing.T) {
	cfg, _, _, err := loadConfig([]string{"-config", "../../configs/parley.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := groups.Limits{CreateRate: groups.DefaultCreateRate, CreateBurst: groups.DefaultCreateBurst,
		AddRate: groups.DefaultAddRate, AddBurst: groups.DefaultAddBurst}
	if got := cfg.groupLimits(); got != want {
		t.Errorf("group limits %+v, want %+v", got, want)
	}
	cfg, _, _, err = loadConfig(nil, env(map[string]string{"PARLEY_GROUPS_CREATE_RATE": "-1", "PARLEY_GROUPS_CREATE_BURST": "3",
		"PARLEY_GROUPS_ADD_RATE": "60.5", "PARLEY_GROUPS_ADD_BURST": "50"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.groupLimits(); got != (groups.Limits{CreateRate: -1, CreateBurst: 3, AddRate: 60.5, AddBurst: 50}) {
		t.Errorf("group limits from the environment %+v", got)
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"create rate 0":  {[]string{"-groups.create_rate", "0"}, "groups.create_rate"},
		"create burst 0": {[]string{"-groups.create_burst", "0"}, "groups.create_burst"},
		"add rate 0":     {[]string{"-groups.add_rate", "0"}, "groups.add_rate"},
		"add burst -1":   {[]string{"-groups.add_burst", "-1"}, "groups.add_burst"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := loadConfig(tc.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}
