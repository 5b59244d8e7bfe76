package store_test

import (
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMemory() })
}

func TestMemoryDataPlanes(t *testing.T) {
	storetest.RunDataPlanes(t, func(*testing.T) store.DataPlaneStore { return store.NewMemory() })
}
