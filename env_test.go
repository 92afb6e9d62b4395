package main

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// clearEnv unsets every RAFTEXAMPLE_* variable of the test process for the
// test, so that the developer's shell does not take part.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) {
			t.Setenv(name, "") // restores it afterwards
			os.Unsetenv(name)
		}
	}
}

func TestFlagsFromEnvironmentVariables(t *testing.T) {
	t.Run("a variable sets its flag, through the flag's own parser", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("RAFTEXAMPLE_SNAP_COUNT", "50")
		t.Setenv("RAFTEXAMPLE_REQUEST_TIMEOUT", "1500ms")
		t.Setenv("RAFTEXAMPLE_DATA_DIR", "/var/lib/raftexample")
		t.Setenv("RAFTEXAMPLE_PEER_CERT_ALLOWED_CN", "") // empty: unset
		o, err := parseFlags(nil)
		if err != nil {
			t.Fatal(err)
		}
		if o.snapCount != 50 || o.requestTimeout.Milliseconds() != 1500 || o.dataDir != "/var/lib/raftexample" {
			t.Fatalf("snap-count %d, request-timeout %v, data-dir %q; want 50, 1.5s, /var/lib/raftexample", o.snapCount, o.requestTimeout, o.dataDir)
		}
		if o.env.given("snap-count") != "RAFTEXAMPLE_SNAP_COUNT" || o.env.given("id") != "--id" {
			t.Fatalf("sources: %v", o.env.set)
		}
		if len(o.env.unknown) != 0 || len(o.env.shadowed) != 0 {
			t.Fatalf("unknown %v, shadowed %v; want none", o.env.unknown, o.env.shadowed)
		}
	})
	t.Run("a flag on the command line wins over its variable", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("RAFTEXAMPLE_SNAP_COUNT", "50")
		t.Setenv("RAFTEXAMPLE_ID", "3")
		o, err := parseFlags([]string{"--snap-count", "70"})
		if err != nil {
			t.Fatal(err)
		}
		if o.snapCount != 70 || o.id != 3 {
			t.Fatalf("snap-count %d id %d, want 70 (the flag) and 3 (the variable)", o.snapCount, o.id)
		}
		if !slices.Equal(o.env.shadowed, []string{"RAFTEXAMPLE_SNAP_COUNT"}) {
			t.Fatalf("shadowed %v, want [RAFTEXAMPLE_SNAP_COUNT]", o.env.shadowed)
		}
	})
	t.Run("a value the flag refuses is an error naming the variable", func(t *testing.T) {
		for name, value := range map[string]string{
			"RAFTEXAMPLE_SNAP_COUNT":      "lots",
			"RAFTEXAMPLE_REQUEST_TIMEOUT": "5",
			"RAFTEXAMPLE_PORT":            "-",
			"RAFTEXAMPLE_JOIN":            "yes please",
		} {
			clearEnv(t)
			t.Setenv(name, value)
			_, err := parseFlags(nil)
			if err == nil || !strings.HasPrefix(err.Error(), name+": invalid value") || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s=%s: error %v, want one line starting with %q", name, value, err, name+": invalid value")
			}
		}
	})
	t.Run("parseFlags checks a value from a variable as one from the flag", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("RAFTEXAMPLE_SNAP_COUNT", "0")
		if _, err := parseFlags(nil); err == nil || err.Error() != "--snap-count must be positive" {
			t.Fatalf("RAFTEXAMPLE_SNAP_COUNT=0: error %v, want --snap-count must be positive", err)
		}
	})
	t.Run("bool flags", func(t *testing.T) {
		for _, c := range []struct {
			value string
			args  []string
			want  bool
		}{
			{"true", nil, true},
			{"1", nil, true},
			{"false", nil, false},
			{"true", []string{"--join=false"}, false}, // the command line wins
			{"false", []string{"--join"}, true},
		} {
			clearEnv(t)
			t.Setenv("RAFTEXAMPLE_JOIN", c.value)
			o, err := parseFlags(c.args)
			if err != nil || o.join != c.want {
				t.Errorf("RAFTEXAMPLE_JOIN=%s %v: join %v (%v), want %v", c.value, c.args, o.join, err, c.want)
			}
		}
	})
	t.Run("a variable that names no flag is warned of and ignored", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("RAFTEXAMPLE_SNAPCOUNT", "50")
		t.Setenv("RAFTEXAMPLE_ARTIFACTS", "/tmp/x") // the tests' own
		o, err := parseFlags(nil)
		if err != nil {
			t.Fatal(err)
		}
		if o.snapCount != 10000 || !slices.Equal(o.env.unknown, []string{"RAFTEXAMPLE_ARTIFACTS", "RAFTEXAMPLE_SNAPCOUNT"}) {
			t.Fatalf("snap-count %d, unknown %v", o.snapCount, o.env.unknown)
		}
		core, logs := observer.New(zapcore.InfoLevel)
		o.env.log(zap.New(core))
		warned := logs.FilterLevelExact(zapcore.WarnLevel).FilterField(zap.String("variable", "RAFTEXAMPLE_SNAPCOUNT")).All()
		if len(warned) != 1 || !strings.Contains(warned[0].Message, "no flag --snapcount") {
			t.Fatalf("warnings %v, want one about RAFTEXAMPLE_SNAPCOUNT naming --snapcount", logs.All())
		}
	})
	t.Run("RAFTEXAMPLE_VERSION is no command", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("RAFTEXAMPLE_VERSION", "true")
		o, err := parseFlags(nil)
		if err != nil || o.printVersion || len(o.env.unknown) != 0 {
			t.Fatalf("printVersion %v, unknown %v, error %v; want a server, no warning", o.printVersion, o.env.unknown, err)
		}
	})
	t.Run("a port from a variable conflicts with --listen-client-url as --port does", func(t *testing.T) {
		for _, c := range []struct {
			env  map[string]string
			args []string
			want string
		}{
			{map[string]string{"RAFTEXAMPLE_PORT": "9200"}, []string{"--listen-client-url", "http://127.0.0.1:9200"},
				"--listen-client-url replaces RAFTEXAMPLE_PORT; give one"},
			{map[string]string{"RAFTEXAMPLE_LISTEN_CLIENT_URL": "http://127.0.0.1:9200"}, []string{"--port", "9200"},
				"RAFTEXAMPLE_LISTEN_CLIENT_URL replaces --port; give one"},
			{map[string]string{"RAFTEXAMPLE_LISTEN_CLIENT_URL": "http://127.0.0.1:9200", "RAFTEXAMPLE_PORT": "9200"}, nil,
				"RAFTEXAMPLE_LISTEN_CLIENT_URL replaces RAFTEXAMPLE_PORT; give one"},
			{map[string]string{"RAFTEXAMPLE_PORT": "9200"}, []string{"--port", "9300", "--listen-client-url", "http://127.0.0.1:9200"},
				"--listen-client-url replaces --port; give one"},
		} {
			clearEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			if _, err := parseFlags(c.args); err == nil || err.Error() != c.want {
				t.Errorf("%v %v: error %v, want %q", c.env, c.args, err, c.want)
			}
		}
		clearEnv(t)
		t.Setenv("RAFTEXAMPLE_LISTEN_CLIENT_URL", "http://127.0.0.1:9200")
		if o, err := parseFlags(nil); err != nil || o.listenClientURL != "http://127.0.0.1:9200" {
			t.Fatalf("RAFTEXAMPLE_LISTEN_CLIENT_URL alone: %q, %v", o.listenClientURL, err)
		}
	})
}

// TestEveryFlagHasItsVariable checks the mapping on the FlagSet parseFlags
// builds: each flag but the commands --version and --restore is set by
// RAFTEXAMPLE_ and its name with underscores, and nothing else is.
func TestEveryFlagHasItsVariable(t *testing.T) {
	clearEnv(t)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var a, b, restore string
	var c bool
	fs.StringVar(&a, "peer-cert-allowed-cn", "", "")
	fs.StringVar(&b, "given", "", "")
	fs.BoolVar(&c, "version", false, "")
	fs.StringVar(&restore, "restore", "", "")
	if err := fs.Parse([]string{"--given", "flag"}); err != nil {
		t.Fatal(err)
	}
	rep, err := applyEnv(fs, []string{
		"RAFTEXAMPLE_PEER_CERT_ALLOWED_CN=first", "RAFTEXAMPLE_PEER_CERT_ALLOWED_CN=second", // the first counts, as for getenv
		"RAFTEXAMPLE_GIVEN=env", "RAFTEXAMPLE_VERSION=true", "RAFTEXAMPLE_RESTORE=backup.db", "RAFTEXAMPLE_PEER-CERT-ALLOWED-CN=x", "PATH=/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	if a != "first" || b != "flag" || c || restore != "" {
		t.Fatalf("peer-cert-allowed-cn %q, given %q, version %v, restore %q; want first, flag, false, none", a, b, c, restore)
	}
	if !slices.Equal(rep.unknown, []string{"RAFTEXAMPLE_PEER-CERT-ALLOWED-CN"}) || !slices.Equal(rep.shadowed, []string{"RAFTEXAMPLE_GIVEN"}) {
		t.Fatalf("unknown %v shadowed %v", rep.unknown, rep.shadowed)
	}
}
