package main

// Flags from the environment, as etcd takes ETCD_* variables: every flag
// --some-name can also be given as RAFTEXAMPLE_SOME_NAME, which is how a
// systemd unit's EnvironmentFile (contrib/) configures a member.
//
// The layer sits on the FlagSet parseFlags builds: after the command line
// is parsed, each flag it did not give is set from its variable through the
// FlagSet, so the flag's own parser checks the value, the checks of
// parseFlags see it as if it had been typed, and fs.Visit counts it as
// given (--port from RAFTEXAMPLE_PORT conflicts with --listen-client-url as
// --port would).

import (
	"flag"
	"fmt"
	"sort"
	"strings"

	"go.uber.org/zap"
)

// envPrefix starts the name of every variable that sets a flag.
const envPrefix = "RAFTEXAMPLE_"

// notFromEnv are flags that are commands, not configuration: a stray
// RAFTEXAMPLE_VERSION (a Dockerfile's, say) must not turn a server into a
// program that prints a line and exits 0, nor a RAFTEXAMPLE_RESTORE left in
// an environment file make every later start a restore.
var notFromEnv = map[string]bool{"version": true, "restore": true}

// envName is the variable of flag name: RAFTEXAMPLE_SNAP_COUNT for
// snap-count.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// envReport is what the environment did to the flags, for the log once
// there is a logger (the log format may itself come from a variable).
type envReport struct {
	set      map[string]string // flag name -> the variable that set it
	shadowed []string          // variables of flags the command line gave: the command line wins
	unknown  []string          // RAFTEXAMPLE_* variables that name no flag
}

// applyEnv sets every flag of fs that the command line did not give from its
// variable in environ (os.Environ's form; of a name given twice, the first
// counts, as for os.Getenv). An empty variable counts as unset, as in etcd,
// so an environment file may list a variable without a value. A value the
// flag refuses is an error naming the variable. A RAFTEXAMPLE_* variable
// that names no flag is reported, not refused: other tools use the prefix
// too (the tests' RAFTEXAMPLE_ARTIFACTS), and a server must not stop for a
// variable it need not understand; the warning names it.
func applyEnv(fs *flag.FlagSet, environ []string) (envReport, error) {
	rep := envReport{set: map[string]string{}}
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if _, seen := vars[name]; strings.HasPrefix(name, envPrefix) && !seen {
			vars[name] = value
		}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	known := map[string]bool{}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		known[name] = true // RAFTEXAMPLE_VERSION too: ignored, but no typo
		if notFromEnv[f.Name] || err != nil {
			return
		}
		value, ok := vars[name]
		switch {
		case !ok || value == "":
		case given[f.Name]:
			rep.shadowed = append(rep.shadowed, name)
		default:
			if serr := fs.Set(f.Name, value); serr != nil {
				err = fmt.Errorf("%s: invalid value %q for --%s: %v", name, value, f.Name, serr)
				return
			}
			rep.set[f.Name] = name
		}
	})
	if err != nil {
		return rep, err
	}
	for name := range vars {
		if !known[name] {
			rep.unknown = append(rep.unknown, name)
		}
	}
	sort.Strings(rep.unknown)
	return rep, nil
}

// given names where flag name's value came from, for errors about it: the
// variable if the environment set it, else the flag.
func (rep envReport) given(name string) string {
	if v, ok := rep.set[name]; ok {
		return v
	}
	return "--" + name
}

// log says which variables set flags, which the command line overrode, and
// warns of those that name no flag (a typo leaves its flag at the default).
func (rep envReport) log(lg *zap.Logger) {
	var used []string
	for _, v := range rep.set {
		used = append(used, v)
	}
	sort.Strings(used)
	if len(used) > 0 || len(rep.shadowed) > 0 {
		lg.Info("flags from the environment", zap.Strings("set", used), zap.Strings("overridden-by-command-line", rep.shadowed))
	}
	for _, v := range rep.unknown {
		lg.Warn("unknown environment variable ignored: no flag --"+strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(v, envPrefix), "_", "-")),
			zap.String("variable", v))
	}
}
