// Command etcd is a single-member, loopback-only etcd for the end-to-end
// tests, built over the etcd server's embed package so that it comes from the
// same module graph as the kube-apiserver it serves. It binds free ports
// itself and prints the client URL once the server is ready, so the harness
// never races another process for a port.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd's data (required)")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("--data-dir is required")
	}

	// Port 0 on both listeners: the kernel picks free ports. The peer URL
	// is never dialled in a one-member cluster, so advertising :0 is fine.
	loopback := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg := embed.NewConfig()
	cfg.Name = "e2e"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{loopback}
	cfg.AdvertiseClientUrls = []url.URL{loopback}
	cfg.ListenPeerUrls = []url.URL{loopback}
	cfg.AdvertisePeerUrls = []url.URL{loopback}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	// Test data is thrown away after the run; fsync only costs time.
	cfg.UnsafeNoFsync = true

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("failed to start etcd: %v", err)
	}
	defer server.Close()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-server.Server.ReadyNotify():
		fmt.Printf("client-url=http://%s\n", server.Clients[0].Addr())
	case err := <-server.Err():
		log.Fatalf("etcd failed before it was ready: %v", err)
	case <-signals:
		return
	}
	select {
	case err := <-server.Err():
		log.Fatalf("etcd failed: %v", err)
	case <-signals:
	}
}
