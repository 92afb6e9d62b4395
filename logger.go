package main

import (
	"fmt"
	"log"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the process logger: one line per event on stderr, in
// format "console" (human-readable) or "json" (one object per line, for a
// log collector: zap's production encoder, with ISO 8601 times as the
// console's and etcd's). At info level a healthy node logs only lifecycle
// events (start, elections, snapshots, membership changes), never a line per
// request.
func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var encoder zapcore.Encoder
	switch format {
	case "console":
		enc := zap.NewDevelopmentEncoderConfig()
		enc.EncodeTime = zapcore.ISO8601TimeEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	case "json":
		enc := zap.NewProductionEncoderConfig()
		enc.EncodeTime = zapcore.ISO8601TimeEncoder
		enc.EncodeDuration = zapcore.StringDurationEncoder // "1.5s", as the console writes it
		encoder = zapcore.NewJSONEncoder(enc)
	default:
		return nil, fmt.Errorf("--log-format must be console or json, not %q", format)
	}
	core := zapcore.NewCore(encoder, zapcore.Lock(os.Stderr), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}

// debugLog is a standard-library logger (for http.Server.ErrorLog) that
// writes to lg at debug level: net/http logs every TLS handshake a scanner
// breaks off and every panic rafthttp uses to drop a connection.
func debugLog(lg *zap.Logger) *log.Logger {
	l, err := zap.NewStdLogAt(lg.Named("http"), zapcore.DebugLevel)
	if err != nil {
		panic(err) // only for an invalid level
	}
	return l
}

// raftLogger adapts zap to the raft library's Logger interface.
type raftLogger struct{ s *zap.SugaredLogger }

func newRaftLogger(lg *zap.Logger) raftLogger {
	return raftLogger{lg.Named("raft").WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

func (l raftLogger) Debug(v ...any)                   { l.s.Debug(v...) }
func (l raftLogger) Debugf(format string, v ...any)   { l.s.Debugf(format, v...) }
func (l raftLogger) Info(v ...any)                    { l.s.Info(v...) }
func (l raftLogger) Infof(format string, v ...any)    { l.s.Infof(format, v...) }
func (l raftLogger) Warning(v ...any)                 { l.s.Warn(v...) }
func (l raftLogger) Warningf(format string, v ...any) { l.s.Warnf(format, v...) }
func (l raftLogger) Error(v ...any)                   { l.s.Error(v...) }
func (l raftLogger) Errorf(format string, v ...any)   { l.s.Errorf(format, v...) }
func (l raftLogger) Fatal(v ...any)                   { l.s.Fatal(v...) }
func (l raftLogger) Fatalf(format string, v ...any)   { l.s.Fatalf(format, v...) }
func (l raftLogger) Panic(v ...any)                   { l.hint(); l.s.Panic(v...) }
func (l raftLogger) Panicf(format string, v ...any)   { l.hint(); l.s.Panicf(format, v...) }

// hint precedes raft's panics, which it raises when this member's log
// contradicts what the cluster knows of it: most often a WAL that lost
// entries it had already acknowledged (a damaged or replaced disk).
func (l raftLogger) hint() {
	l.s.Error("raft cannot go on with this member's data; if its WAL or snapshot files were damaged or truncated, " +
		"remove the member (DELETE /{id}), wipe its data directory and add it back under a new id")
}
