// Package sqltest runs the Admin API suite (admintest) on the SQLite and
// PostgreSQL stores. It lives apart from package admin so that admin's fuzz
// target does not link the SQL drivers.
package sqltest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/admin/admintest"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
	"github.com/kiln-dev/kiln/pkg/proxy/store/storetest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(s *pgtest.Server) { pg = s }))
}

func TestAdminOnSQLite(t *testing.T) {
	admintest.Run(t, func(t *testing.T) store.Store { return storetest.OpenSQLite(t) })
}

func TestAdminOnPostgres(t *testing.T) {
	admintest.Run(t, func(t *testing.T) store.Store {
		s, _ := storetest.OpenPostgres(t, pg, 0)
		return s
	})
}

func TestOAuth2AdminOnSQLite(t *testing.T) { testOAuth2Admin(t, storetest.OpenSQLite(t)) }

func TestOAuth2AdminOnPostgres(t *testing.T) {
	s, _ := storetest.OpenPostgres(t, pg, 0)
	testOAuth2Admin(t, s)
}

// testOAuth2Admin covers /consumers/{c}/oauth2, /oauth2 and /oauth2_tokens.
func testOAuth2Admin(t *testing.T, st interface {
	store.Store
	store.OAuth2Store
}) {
	c, _ := admintest.NewClient(t, st)
	c.Expect(c.JSON("POST", "/consumers", `{"username":"alice"}`), 201)
	cred := c.Expect(c.JSON("POST", "/consumers/alice/oauth2", `{"name":"app","redirect_uris":["http://a.example/cb"]}`), 201).Body
	id, _ := cred["client_id"].(string)
	if len(id) != 32 || cred["client_secret"] == "" || cred["client_type"] != "confidential" || cred["hash_secret"] != false {
		t.Fatalf("credential %v", cred)
	}
	c.Expect(c.JSON("GET", "/oauth2/"+id, ""), 200)
	c.Expect(c.JSON("POST", "/consumers/alice/oauth2", `{"name":"x","redirect_uris":["not a uri"]}`), 400)
	c.Expect(c.JSON("POST", "/consumers/alice/oauth2", `{"redirect_uris":["http://a.example/cb"]}`), 400)
	hashed := c.Expect(c.JSON("POST", "/consumers/alice/oauth2", `{"name":"h","client_secret":"s","hash_secret":true}`), 201).Body
	if h, _ := hashed["client_secret"].(string); !entity.VerifyOAuth2Secret("s", h) {
		t.Fatalf("hash_secret stored %q", h)
	}

	ctx := context.Background()
	now := time.Now()
	credID, _ := cred["id"].(string)
	for i, access := range []string{"tok-a", "tok-b", "tok-c"} {
		tok := store.OAuth2Token{ID: fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i), CredentialID: credID,
			AccessToken: access, ExpiresIn: 7200, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if i == 2 {
			tok.ExpiresAt = now.Add(-time.Second) // past its TTL: never listed
		}
		if err := st.InsertOAuth2Token(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	page := c.Expect(c.JSON("GET", "/oauth2_tokens?size=1", ""), 200).Body
	if len(page["data"].([]any)) != 1 || page["next"] == nil {
		t.Fatalf("first page %v", page)
	}
	page = c.Expect(c.JSON("GET", "/oauth2_tokens?size=1&offset="+page["offset"].(string), ""), 200).Body
	if d := page["data"].([]any); len(d) != 1 || d[0].(map[string]any)["access_token"] != "tok-b" || page["next"] != nil {
		t.Fatalf("second page %v", page)
	}
	got := c.Expect(c.JSON("GET", "/oauth2_tokens/tok-a", ""), 200).Body
	if got["credential"].(map[string]any)["id"] != credID || got["service"] != nil || got["token_type"] != "bearer" {
		t.Fatalf("token %v", got)
	}
	c.Expect(c.JSON("GET", "/oauth2_tokens/tok-c", ""), 404)
	c.Expect(c.JSON("DELETE", "/oauth2_tokens/tok-a", ""), 204)
	c.Expect(c.JSON("GET", "/oauth2_tokens/00000000-0000-4000-8000-000000000000", ""), 404)
	c.Expect(c.JSON("POST", "/oauth2_tokens", `{}`), 405)

	// Purging removes expired rows and, as Kong's cascades would, the
	// tokens of deleted credentials.
	if err := st.InsertOAuth2Token(ctx, store.OAuth2Token{ID: "00000000-0000-4000-8000-000000000009", CredentialID: credID,
		AccessToken: "tok-d", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.PurgeOAuth2(ctx, now); err != nil || n != 1 {
		t.Fatalf("purge removed %d rows (%v), want the expired one", n, err)
	}
	c.Expect(c.JSON("DELETE", "/oauth2/"+id, ""), 204)
	if n, err := st.PurgeOAuth2(ctx, now); err != nil || n != 2 {
		t.Fatalf("purge removed %d rows (%v), want the deleted credential's two", n, err)
	}
	if page := c.Expect(c.JSON("GET", "/oauth2_tokens", ""), 200).Body; len(page["data"].([]any)) != 0 {
		t.Fatalf("tokens left: %v", page)
	}
}
