package redistest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSecondServerOnTakenPortIsDetected checks the two mechanisms behind
// the bind-failure retry: a server whose port is taken is recognised as
// such, and the PING probe refuses to accept another process's answer.
func TestSecondServerOnTakenPortIsDetected(t *testing.T) {
	t.Parallel()
	bin, err := serverBin()
	if err != nil {
		t.Fatal(err)
	}
	first := Start(t)

	port, err := strconv.Atoi(first.Addr[strings.LastIndex(first.Addr, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	second, err := launch(bin, port, []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.kill)

	if err := second.waitReady(5 * time.Second); err == nil {
		t.Fatal("waitReady accepted a port answered by another redis-server")
	}
	if !second.bindFailed() {
		t.Fatalf("bindFailed() = false; output:%s", second.outputTail())
	}
	if err := probe(first.Addr, second.cmd.Process.Pid); err == nil || !strings.Contains(err.Error(), "process_id") {
		t.Fatalf("probe with the wrong pid = %v, want a process_id mismatch", err)
	}
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	b := &tailBuffer{limit: 10}
	for i := range 5 {
		_, _ = b.Write([]byte("line" + strconv.Itoa(i) + "\n"))
	}
	if got := b.String(); got != "ne3\nline4\n" {
		t.Fatalf("String() = %q, want the last 10 bytes", got)
	}
	if got := lastLines("a\nb\nc\n", 2); got != "b\nc" {
		t.Fatalf("lastLines = %q", got)
	}
	if got := lastLines("", 2); got != "" {
		t.Fatalf("lastLines(empty) = %q", got)
	}
}
