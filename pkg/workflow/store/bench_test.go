package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
	"github.com/kiln-dev/kiln/pkg/workflow/store/storetest"
)

// BenchmarkListByAgent is what every GetAction poll costs with 200 machines
// whose workflows carry full log tails: the agent index against the peer, a
// scan that decodes every workflow and filters (kiln's first version).
func BenchmarkListByAgent(b *testing.B) {
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "wf.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		w := storetest.NewWorkflow("", fmt.Sprintf("m%03d", i), fmt.Sprintf("aa:00:00:00:%02x:%02x", i/256, i%256), time.Now())
		for j := 0; j < 5; j++ {
			a := w.Tasks[0].Actions[0]
			a.Name = fmt.Sprintf("a%d", j)
			w.Tasks[0].Actions = append(w.Tasks[0].Actions, a)
		}
		for j := range w.Tasks[0].Actions {
			for k := 0; k < workflow.LogTailLines; k++ {
				w.AppendLog(workflow.Ref{Action: j}, "image2disk: read 301.2 MiB of 612.0 MiB (49%), wrote 1500.0 MiB to disk at 140.2 MB/s in 10.7s")
			}
		}
		if err := st.Create(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
	const agent = "aa:00:00:00:00:05"
	b.Run("index", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if got, _ := st.ListByAgent(ctx, agent); len(got) != 1 {
				b.Fatal(len(got))
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			all, _ := st.List(ctx)
			if got := store.FilterByAgent(all, agent); len(got) != 1 {
				b.Fatal(len(got))
			}
		}
	})
}
