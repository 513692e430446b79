// Command baremochi runs a bare mochi-mqtt broker (v2.7.9): one TCP listener,
// an allow-all auth hook and no other hooks. Run it next to Parley and
// Mosquitto to see what the broker library costs on its own:
//
//	baremochi -addr 127.0.0.1:1884
//	parley-loadtest raw -broker 127.0.0.1:1884 -pid $(pgrep -n baremochi) …
//
// It prints its address and process id, and stops on SIGINT or SIGTERM.
// -pprof ADDR serves Go's profiles (net/http/pprof) at http://ADDR/debug/pprof/,
// to compare where memory goes with Parley's (parley -debug.pprof).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/parleychat/parley/loadtest/baremochi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "baremochi:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:1884", "TCP `address` to listen on (port 0 picks a free one)")
	pending := flag.Int("max-writes-pending", 0, "per-client outbound queue length (0: mochi's default, 8192)")
	level := flag.String("log-level", "error", "broker log `level`: debug, info, warn or error "+
		"(warn logs an empty message for every client that disconnects with EOF)")
	pprofAddr := flag.String("pprof", "", "serve Go profiles at http://`address`/debug/pprof/ (port 0 picks a free one; empty: off)")
	flag.Parse()

	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b, err := baremochi.Start(baremochi.Config{
		Addr: *addr, MaxClientWritesPending: int32(*pending), Logger: logger,
	})
	if err != nil {
		return err
	}
	fmt.Printf("baremochi listening on %s (pid %d)\n", b.Addr(), os.Getpid())
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			_ = b.Close()
			return fmt.Errorf("-pprof: %w", err)
		}
		defer ln.Close()
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		go func() { _ = http.Serve(ln, mux) }() // ends when ln closes
		fmt.Printf("baremochi pprof on http://%s/debug/pprof/\n", ln.Addr())
	}
	<-ctx.Done()
	fmt.Println("baremochi stopping")
	return b.Close()
}
