package main

// What bench/put-if.lua needs around a run: each key's modRevision before
// it (revs), and how the member answered the PUTs (codes); bench/txn.lua
// uses codes too.

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
)

// revs writes "key modRevision" lines for every key under -prefix, from the
// listing, so that a conditional PUT can send If-Match: "<modRevision>".
func revs(args []string) error {
	fs := flag.NewFlagSet("revs", flag.ExitOnError)
	base := fs.String("url", "", "client URL of one member")
	prefix := fs.String("prefix", "bench-", "list the keys under this prefix")
	out := fs.String("out", "", "file to write (default: standard output)")
	fs.Parse(args)
	if *base == "" {
		return errors.New("revs: -url is required")
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = bufio.NewWriterSize(f, 1<<16)
	}
	c := client(1)
	start, n := "", 0
	for {
		resp, err := c.Get(*base + "/v1/kv/?limit=10000&prefix=" + url.QueryEscape(*prefix) + "&start=" + start)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return fmt.Errorf("revs: listing: %s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		var items []struct {
			Key         string `json:"key"`
			ModRevision uint64 `json:"modRevision"`
			Encoding    string `json:"encoding"`
		}
		err = json.NewDecoder(resp.Body).Decode(&items)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("revs: listing: %v", err)
		}
		for _, it := range items {
			if it.Encoding != "" || strings.ContainsAny(it.Key, " \n") {
				return fmt.Errorf("revs: key %q is not one the wrk scripts write", it.Key)
			}
			if it.ModRevision == 0 {
				return fmt.Errorf("revs: key %q has no modRevision (a server without revisions?)", it.Key)
			}
			fmt.Fprintf(w, "%s %d\n", it.Key, it.ModRevision)
			n++
		}
		start = resp.Header.Get("X-Next-Start")
		if start == "" {
			break
		}
	}
	if n == 0 {
		return fmt.Errorf("revs: no keys under %q", *prefix)
	}
	return w.Flush()
}

// codes prints how many answers to -method the member gave, by status code,
// summed over routes (or on -route only), from raftexample_http_requests_total:
// "204=N 412=N".
func codes(args []string) error {
	fs := flag.NewFlagSet("codes", flag.ExitOnError)
	base := fs.String("url", "", "client URL of one member")
	method := fs.String("method", "PUT", "HTTP method")
	route := fs.String("route", "", "count only this route label (default: all routes)")
	fs.Parse(args)
	if *base == "" {
		return errors.New("codes: -url is required")
	}
	resp, err := client(1).Get(*base + "/metrics")
	if err != nil {
		return err
	}
	text, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	byCode := map[string]float64{}
	for line := range strings.Lines(string(text)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !strings.HasPrefix(name, "raftexample_http_requests_total{") ||
			!strings.Contains(name, `method="`+*method+`"`) ||
			*route != "" && !strings.Contains(name, `route="`+*route+`"`) {
			continue
		}
		_, code, _ := strings.Cut(name, `code="`)
		code, _, _ = strings.Cut(code, `"`)
		v, err := strconv.ParseFloat(value, 64)
		if err == nil {
			byCode[code] += v
		}
	}
	keys := make([]string, 0, len(byCode))
	for k := range byCode {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			fmt.Print(" ")
		}
		fmt.Printf("%s=%.0f", k, byCode[k])
	}
	fmt.Println()
	return nil
}
