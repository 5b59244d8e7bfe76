// Package entity is the gateway's configuration model: Go types for Kong's
// entities (services, routes, consumers, plugins, upstreams, targets,
// certificates, SNIs, CA certificates and the key-auth / basic-auth / acl
// credentials) with Kong's JSON field names, the schemas that fill Kong's
// defaults and produce Kong-style field errors, the bundled plugins' config
// schemas, and Config, an immutable snapshot of every entity at once.
//
// Ownership: the store (pkg/proxy/store) and the Admin API write entities; the
// data plane receives a *Config and compiles it into its router, balancers and
// plugin chains. The data plane MUST treat a Config and everything reachable
// from it as read-only: the same snapshot is shared by every request in
// flight and by every compiled structure built from it. A new snapshot is
// built for every change; nothing is ever mutated in place.
package entity

// KongVersion is the Kong release whose Admin API and behaviour kiln
// implements; GET / reports it as "version".
const KongVersion = "3.10.0"

// FK is a foreign key as Kong returns it: {"id": "<uuid>"}.
type FK struct {
	ID string `json:"id"`
}

// Service is an upstream API or microservice.
type Service struct {
	ID                string   `json:"id"`
	CreatedAt         int64    `json:"created_at"`
	UpdatedAt         int64    `json:"updated_at"`
	Name              *string  `json:"name"`
	Retries           int      `json:"retries"`
	Protocol          string   `json:"protocol"`
	Host              string   `json:"host"`
	Port              int      `json:"port"`
	Path              *string  `json:"path"`
	ConnectTimeout    int      `json:"connect_timeout"`
	WriteTimeout      int      `json:"write_timeout"`
	ReadTimeout       int      `json:"read_timeout"`
	Tags              []string `json:"tags"`
	ClientCertificate *FK      `json:"client_certificate"`
	TLSVerify         *bool    `json:"tls_verify"`
	TLSVerifyDepth    *int     `json:"tls_verify_depth"`
	CACertificates    []string `json:"ca_certificates"`
	Enabled           bool     `json:"enabled"`
}

// CIDRPort is a route source/destination condition.
type CIDRPort struct {
	IP   *string `json:"ip"`
	Port *int    `json:"port"`
}

// Route decides which requests reach a service.
type Route struct {
	ID                      string              `json:"id"`
	CreatedAt               int64               `json:"created_at"`
	UpdatedAt               int64               `json:"updated_at"`
	Name                    *string             `json:"name"`
	Protocols               []string            `json:"protocols"`
	Methods                 []string            `json:"methods"`
	Hosts                   []string            `json:"hosts"`
	Paths                   []string            `json:"paths"`
	Headers                 map[string][]string `json:"headers"`
	HTTPSRedirectStatusCode int                 `json:"https_redirect_status_code"`
	RegexPriority           int                 `json:"regex_priority"`
	StripPath               bool                `json:"strip_path"`
	PathHandling            string              `json:"path_handling"`
	PreserveHost            bool                `json:"preserve_host"`
	RequestBuffering        bool                `json:"request_buffering"`
	ResponseBuffering       bool                `json:"response_buffering"`
	SNIs                    []string            `json:"snis"`
	Sources                 []CIDRPort          `json:"sources"`
	Destinations            []CIDRPort          `json:"destinations"`
	Tags                    []string            `json:"tags"`
	Service                 *FK                 `json:"service"`
}

// Consumer is an API user, identified by username and/or custom_id.
type Consumer struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	UpdatedAt int64    `json:"updated_at"`
	Username  *string  `json:"username"`
	CustomID  *string  `json:"custom_id"`
	Tags      []string `json:"tags"`
}

// Plugin is a plugin instance, global or scoped to a route, service and/or
// consumer. Config has been validated against Plugins[Name] and carries
// every default (JSON-shaped values: numbers are float64).
type Plugin struct {
	ID           string         `json:"id"`
	CreatedAt    int64          `json:"created_at"`
	UpdatedAt    int64          `json:"updated_at"`
	Name         string         `json:"name"`
	InstanceName *string        `json:"instance_name"`
	Route        *FK            `json:"route"`
	Service      *FK            `json:"service"`
	Consumer     *FK            `json:"consumer"`
	Config       map[string]any `json:"config"`
	Protocols    []string       `json:"protocols"`
	Enabled      bool           `json:"enabled"`
	Tags         []string       `json:"tags"`
}

// Healthchecks is an upstream's health-check configuration (Kong's fields).
type Healthchecks struct {
	Active    ActiveHealthcheck  `json:"active"`
	Passive   PassiveHealthcheck `json:"passive"`
	Threshold float64            `json:"threshold"`
}

// ActiveHealthcheck configures probes.
type ActiveHealthcheck struct {
	Type                   string              `json:"type"`
	Timeout                float64             `json:"timeout"`
	Concurrency            int                 `json:"concurrency"`
	HTTPPath               string              `json:"http_path"`
	HTTPSSNI               *string             `json:"https_sni"`
	HTTPSVerifyCertificate bool                `json:"https_verify_certificate"`
	Headers                map[string][]string `json:"headers"`
	Healthy                ActiveHealthy       `json:"healthy"`
	Unhealthy              ActiveUnhealthy     `json:"unhealthy"`
}

// ActiveHealthy are the thresholds for marking a target healthy by probes.
// Interval 0 disables probing of unhealthy... healthy targets.
type ActiveHealthy struct {
	Interval     int   `json:"interval"`
	HTTPStatuses []int `json:"http_statuses"`
	Successes    int   `json:"successes"`
}

// ActiveUnhealthy are the thresholds for marking a target unhealthy by probes.
type ActiveUnhealthy struct {
	Interval     int   `json:"interval"`
	HTTPStatuses []int `json:"http_statuses"`
	TCPFailures  int   `json:"tcp_failures"`
	Timeouts     int   `json:"timeouts"`
	HTTPFailures int   `json:"http_failures"`
}

// PassiveHealthcheck configures the circuit breaker fed by proxied traffic.
type PassiveHealthcheck struct {
	Type      string           `json:"type"`
	Healthy   PassiveHealthy   `json:"healthy"`
	Unhealthy PassiveUnhealthy `json:"unhealthy"`
}

// PassiveHealthy lists statuses counted as successes.
type PassiveHealthy struct {
	HTTPStatuses []int `json:"http_statuses"`
	Successes    int   `json:"successes"`
}

// PassiveUnhealthy lists statuses and counters that mark a target unhealthy.
type PassiveUnhealthy struct {
	HTTPStatuses []int `json:"http_statuses"`
	TCPFailures  int   `json:"tcp_failures"`
	Timeouts     int   `json:"timeouts"`
	HTTPFailures int   `json:"http_failures"`
}

// Upstream is a virtual hostname balanced over targets.
type Upstream struct {
	ID                     string       `json:"id"`
	CreatedAt              int64        `json:"created_at"`
	UpdatedAt              int64        `json:"updated_at"`
	Name                   string       `json:"name"`
	Algorithm              string       `json:"algorithm"`
	HashOn                 string       `json:"hash_on"`
	HashFallback           string       `json:"hash_fallback"`
	HashOnHeader           *string      `json:"hash_on_header"`
	HashFallbackHeader     *string      `json:"hash_fallback_header"`
	HashOnCookie           *string      `json:"hash_on_cookie"`
	HashOnCookiePath       string       `json:"hash_on_cookie_path"`
	HashOnQueryArg         *string      `json:"hash_on_query_arg"`
	HashFallbackQueryArg   *string      `json:"hash_fallback_query_arg"`
	HashOnURICapture       *string      `json:"hash_on_uri_capture"`
	HashFallbackURICapture *string      `json:"hash_fallback_uri_capture"`
	Slots                  int          `json:"slots"`
	Healthchecks           Healthchecks `json:"healthchecks"`
	Tags                   []string     `json:"tags"`
	HostHeader             *string      `json:"host_header"`
	ClientCertificate      *FK          `json:"client_certificate"`
	UseSRVName             bool         `json:"use_srv_name"`
}

// Target is one backend address of an upstream ("host:port"; the port is
// always present after processing, Kong's default being 8000).
type Target struct {
	ID        string   `json:"id"`
	CreatedAt float64  `json:"created_at"`
	UpdatedAt float64  `json:"updated_at"`
	Upstream  *FK      `json:"upstream"`
	Target    string   `json:"target"`
	Weight    int      `json:"weight"`
	Tags      []string `json:"tags"`
}

// Certificate is a PEM certificate and key (and optional alternate pair).
type Certificate struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	UpdatedAt int64    `json:"updated_at"`
	Cert      string   `json:"cert"`
	Key       string   `json:"key"`
	CertAlt   *string  `json:"cert_alt"`
	KeyAlt    *string  `json:"key_alt"`
	SNIs      []string `json:"snis"`
	Tags      []string `json:"tags"`
}

// SNI maps a server name (wildcards allowed) to a certificate.
type SNI struct {
	ID          string   `json:"id"`
	CreatedAt   int64    `json:"created_at"`
	UpdatedAt   int64    `json:"updated_at"`
	Name        string   `json:"name"`
	Tags        []string `json:"tags"`
	Certificate *FK      `json:"certificate"`
}

// CACertificate is a trusted CA used to verify upstreams or clients.
type CACertificate struct {
	ID         string   `json:"id"`
	CreatedAt  int64    `json:"created_at"`
	UpdatedAt  int64    `json:"updated_at"`
	Cert       string   `json:"cert"`
	CertDigest string   `json:"cert_digest"`
	Tags       []string `json:"tags"`
}

// KeyAuthCredential is a consumer's API key (table keyauth_credentials).
type KeyAuthCredential struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	Consumer  *FK      `json:"consumer"`
	Key       string   `json:"key"`
	TTL       *int     `json:"ttl"`
	Tags      []string `json:"tags"`
}

// BasicAuthCredential is a consumer's username and salted password hash
// (table basicauth_credentials). Password holds the hash, never the secret.
type BasicAuthCredential struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	Consumer  *FK      `json:"consumer"`
	Username  string   `json:"username"`
	Password  string   `json:"password"`
	Tags      []string `json:"tags"`
}

// JWTSecret is a consumer's jwt credential (table jwt_secrets): the key
// tokens name in their key claim, and the HMAC secret or public key that
// verifies them.
type JWTSecret struct {
	ID           string   `json:"id"`
	CreatedAt    int64    `json:"created_at"`
	Consumer     *FK      `json:"consumer"`
	Key          string   `json:"key"`
	Secret       *string  `json:"secret"`
	RSAPublicKey *string  `json:"rsa_public_key"`
	Algorithm    string   `json:"algorithm"`
	Tags         []string `json:"tags"`
}

// HMACAuthCredential is a consumer's hmac-auth username and shared secret
// (table hmacauth_credentials).
type HMACAuthCredential struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	Consumer  *FK      `json:"consumer"`
	Username  string   `json:"username"`
	Secret    string   `json:"secret"`
	Tags      []string `json:"tags"`
}

// ACLGroup puts a consumer in a group (table acls).
type ACLGroup struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	Consumer  *FK      `json:"consumer"`
	Group     string   `json:"group"`
	Tags      []string `json:"tags"`
}

// KeySet groups keys (table key_sets).
type KeySet struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	UpdatedAt int64    `json:"updated_at"`
	Name      *string  `json:"name"`
	Tags      []string `json:"tags"`
}

// Key is a JWK or PEM key (table keys).
type Key struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	UpdatedAt int64    `json:"updated_at"`
	Set       *FK      `json:"set"`
	Name      *string  `json:"name"`
	KID       string   `json:"kid"`
	JWK       *string  `json:"jwk"`
	PEM       *KeyPEM  `json:"pem"`
	Tags      []string `json:"tags"`
}

// KeyPEM is a key in PEM form.
type KeyPEM struct {
	PrivateKey *string `json:"private_key"`
	PublicKey  *string `json:"public_key"`
}
