package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// oauth2PurgeEvery is how often expired oauth2 tokens and codes are
// deleted (Kong's TTL cleanup timer runs every minute too).
const oauth2PurgeEvery = time.Minute

// oauth2Tokens returns the store's OAuth2Store: the SQL stores have one,
// DB-less in-memory stores (and so hybrid data planes) do not, and there
// the oauth2 plugin refuses to run, as Kong's does.
func oauth2Tokens(st store.Store) store.OAuth2Store {
	ts, _ := st.(store.OAuth2Store)
	return ts
}

// purgeOAuth2 deletes expired oauth2 rows until ctx ends. Look-ups already
// ignore expired rows; purging only bounds the tables.
func purgeOAuth2(ctx context.Context, ts store.OAuth2Store, log *slog.Logger) {
	t := time.NewTicker(oauth2PurgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := ts.PurgeOAuth2(ctx, time.Now()); err != nil && ctx.Err() == nil {
			log.Warn("oauth2: purge expired tokens", "error", err)
		} else if n > 0 {
			log.Debug("oauth2: purged expired tokens and codes", "rows", n)
		}
	}
}
