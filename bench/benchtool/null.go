package main

// benchtool null -addr HOST:PORT [-body-bytes 256]
//
// A do-nothing Go net/http server: every request is answered 200 with the
// same body. bench/run.sh measures it first, with the serializable GET's
// wrk script and connection counts, as the ceiling a Go HTTP server reaches
// on this machine: a serializable GET does little more than this (issue
// #16: at least 0.9 of it at 256 connections). The body is as long as the
// GET's value (-body-bytes = --value-bytes) so that both send as much.

import (
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// nullHandler answers every request with 200 and body. Like raftexample's
// GET, it reads no request body and sets the type and length itself.
func nullHandler(body []byte) http.Handler {
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", length)
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})
}

func nullCmd(args []string) error {
	fs := flag.NewFlagSet("null", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	bodyBytes := fs.Int("body-bytes", 256, "bytes in each answer's body")
	fs.Parse(args)
	if *bodyBytes < 0 || *bodyBytes > 1<<20 {
		return errors.New("null: -body-bytes must be in 0..1048576")
	}
	body := make([]byte, *bodyBytes)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: nullHandler(body), ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
