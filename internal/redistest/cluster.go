package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// clusterMasters is the number of master nodes StartCluster creates.
	clusterMasters = 3
	// clusterCreateTimeout bounds `redis-cli --cluster create`.
	clusterCreateTimeout = 60 * time.Second
	// clusterOKTimeout bounds the wait for cluster_state:ok on every node.
	clusterOKTimeout = 30 * time.Second
)

// Cluster is a 3-master Redis Cluster (no replicas) started by StartCluster.
// It is stopped automatically when the test that started it finishes.
type Cluster struct {
	// Addrs are the "127.0.0.1:PORT" client addresses of the master nodes.
	Addrs []string

	nodes []*proc
}

// StartCluster starts a 3-master Redis Cluster on free loopback ports (each
// node with --cluster-enabled yes, its cluster config file in a t.TempDir()
// and no persistence), joins it with `redis-cli --cluster create ...
// --cluster-replicas 0 --cluster-yes`, waits until CLUSTER INFO reports
// cluster_state:ok on every node, and stops all nodes in t.Cleanup. Like
// Start it fails the test (never skips) when redis-server or redis-cli is
// missing.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := serverBin()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	cli, err := cliBin(bin)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}

	c := &Cluster{}
	for i := range clusterMasters {
		p, err := startNode(t, bin, true, func(dir string) []string {
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			}
		})
		if err != nil {
			t.Fatalf("redistest: cluster node %d: %v", i, err)
		}
		c.nodes = append(c.nodes, p)
		c.Addrs = append(c.Addrs, p.addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: %s %s: %v%s%s", cli, strings.Join(args, " "), err,
			formatTail("redis-cli", lastLines(string(out), tailLines)), c.nodeTails())
	}

	if err := c.waitOK(clusterOKTimeout); err != nil {
		t.Fatalf("redistest: cluster %v never became healthy: %v%s%s", c.Addrs, err,
			formatTail("redis-cli", lastLines(string(out), tailLines)), c.nodeTails())
	}
	return c
}

// Client returns a go-redis cluster client for the cluster, closed in
// t.Cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, Protocol: resp})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// waitOK polls CLUSTER INFO on every node until each one reports
// cluster_state:ok with all slots assigned and all masters known.
func (c *Cluster) waitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": "16384",
		"cluster_known_nodes":    fmt.Sprint(len(c.nodes)),
	}
	for _, p := range c.nodes {
		for {
			if p.exited() {
				return fmt.Errorf("node %s exited (%v)", p.addr, p.waitErr)
			}
			err := checkClusterInfo(p.addr, want)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %s: %v", p.addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func checkClusterInfo(addr string, want map[string]string) error {
	rc, err := dialRESP(addr, time.Second)
	if err != nil {
		return err
	}
	defer rc.Close()
	info, err := rc.do("CLUSTER", "INFO")
	if err != nil {
		return err
	}
	for k, v := range want {
		if got, _ := infoField(info, k); got != v {
			return fmt.Errorf("CLUSTER INFO %s=%q, want %q", k, got, v)
		}
	}
	return nil
}

// nodeTails formats the last output lines of every node for messages.
func (c *Cluster) nodeTails() string {
	var b strings.Builder
	for _, p := range c.nodes {
		b.WriteString(p.outputTail())
	}
	return b.String()
}

// KillNode stops master i abruptly with SIGKILL, as a crashed node: the
// cluster loses the slots it served (there are no replicas).
func (c *Cluster) KillNode(i int) { c.nodes[i].kill() }
