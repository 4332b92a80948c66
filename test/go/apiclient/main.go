// Command apiclient drives weft's /api/v2 with Tailscale's official Go client library
// (tailscale.com/client/tailscale/v2), so tests see weft the way Tailscale's own tools do.
//
// One scenario per run; the result is one JSON object on stdout. Any error prints
// {"error": "...", "status": N} (N = the API's HTTP status, 0 when there was none) and exits 1.
//
//	apiclient -url http://127.0.0.1:8080 -api-key weft-api-… list-devices
//	apiclient -url … -oauth-id ID -oauth-secret weft-client-… [-scopes a,b] list-devices
//
// Scenarios:
//
//	list-devices                                 every device (all fields)
//	create-key -tags tag:a[,tag:b] [-reusable] [-ephemeral] [-expiry-seconds N] [-description S]
//	get-routes -device ID
//	set-routes -device ID -routes 10.0.0.0/24[,…]   then reads them back
//	acl-roundtrip -file POLICY                   reads the policy and its ETag, sets POLICY with that
//	                                             ETag, reads it back; fails unless the text is the same
//	acl-stale -file POLICY                       sets POLICY with a made-up ETag (must fail with 412)
//	set-nameservers -dns 1.1.1.1[,…]             then reads them back
//	list-users
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	tailscale "tailscale.com/client/tailscale/v2"
)

type options struct {
	baseURL, apiKey, oauthID, oauthSecret, scopes string
	tags, routes, dns, device, file, description  string
	reusable, ephemeral                           bool
	expirySeconds                                 int64
}

func main() {
	var o options
	fs := flag.NewFlagSet("apiclient", flag.ExitOnError)
	fs.StringVar(&o.baseURL, "url", os.Getenv("APICLIENT_URL"), "weft's base URL")
	fs.StringVar(&o.apiKey, "api-key", os.Getenv("APICLIENT_API_KEY"), "a weft API key")
	fs.StringVar(&o.oauthID, "oauth-id", os.Getenv("APICLIENT_OAUTH_ID"), "OAuth client id (instead of an API key)")
	fs.StringVar(&o.oauthSecret, "oauth-secret", os.Getenv("APICLIENT_OAUTH_SECRET"), "OAuth client secret")
	fs.StringVar(&o.scopes, "scopes", "", "comma-separated scopes to ask the token for (default: the client's)")
	fs.StringVar(&o.tags, "tags", "", "comma-separated tags")
	fs.StringVar(&o.routes, "routes", "", "comma-separated routes")
	fs.StringVar(&o.dns, "dns", "", "comma-separated nameservers")
	fs.StringVar(&o.device, "device", "", "device id")
	fs.StringVar(&o.file, "file", "", "policy file")
	fs.StringVar(&o.description, "description", "", "key description")
	fs.BoolVar(&o.reusable, "reusable", false, "reusable key")
	fs.BoolVar(&o.ephemeral, "ephemeral", false, "ephemeral key")
	fs.Int64Var(&o.expirySeconds, "expiry-seconds", 3600, "key lifetime in seconds")
	// Flags may come before or after the scenario name.
	_ = fs.Parse(os.Args[1:])
	scenario := fs.Arg(0)
	if fs.NArg() > 1 {
		_ = fs.Parse(fs.Args()[1:])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := newClient(o)
	if err == nil {
		var result any
		result, err = run(ctx, client, scenario, o)
		if err == nil {
			emit(result)
			return
		}
	}
	status := 0
	var apiErr tailscale.APIError
	if errors.As(err, &apiErr) {
		status = apiErr.Status
	}
	emit(map[string]any{"error": err.Error(), "status": status})
	os.Exit(1)
}

func emit(v any) {
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func newClient(o options) (*tailscale.Client, error) {
	base, err := url.Parse(o.baseURL)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("-url must be weft's base URL, got %q", o.baseURL)
	}
	client := &tailscale.Client{BaseURL: base, UserAgent: "weft-apiclient-test"}
	switch {
	case o.oauthSecret != "":
		client.Auth = &tailscale.OAuth{ClientID: o.oauthID, ClientSecret: o.oauthSecret, Scopes: list(o.scopes)}
	case o.apiKey != "":
		client.APIKey = o.apiKey
	default:
		return nil, errors.New("give -api-key or -oauth-secret")
	}
	return client, nil
}

func run(ctx context.Context, c *tailscale.Client, scenario string, o options) (any, error) {
	switch scenario {
	case "list-devices":
		devices, err := c.Devices().List(ctx, tailscale.WithFields(tailscale.IncludeFieldsAll))
		if err != nil {
			return nil, err
		}
		return map[string]any{"devices": devices}, nil
	case "create-key":
		var req tailscale.CreateKeyRequest
		req.Capabilities.Devices.Create.Reusable = o.reusable
		req.Capabilities.Devices.Create.Ephemeral = o.ephemeral
		req.Capabilities.Devices.Create.Preauthorized = true
		req.Capabilities.Devices.Create.Tags = list(o.tags)
		req.ExpirySeconds = o.expirySeconds
		req.Description = o.description
		key, err := c.Keys().CreateAuthKey(ctx, req)
		if err != nil {
			return nil, err
		}
		// Read it back the way Terraform does: no secret, the same capabilities.
		got, err := c.Keys().Get(ctx, key.ID)
		if err != nil {
			return nil, err
		}
		if got.Key != "" {
			return nil, errors.New("GET returned the key's secret")
		}
		return map[string]any{"id": key.ID, "key": key.Key, "expires": key.Expires, "read": got}, nil
	case "get-routes":
		return c.Devices().SubnetRoutes(ctx, o.device)
	case "set-routes":
		if err := c.Devices().SetSubnetRoutes(ctx, o.device, list(o.routes)); err != nil {
			return nil, err
		}
		return c.Devices().SubnetRoutes(ctx, o.device)
	case "acl-roundtrip":
		return aclRoundTrip(ctx, c, o.file)
	case "acl-stale":
		text, err := os.ReadFile(o.file)
		if err != nil {
			return nil, err
		}
		return nil, c.PolicyFile().Set(ctx, string(text), "stale-etag-0000")
	case "set-nameservers":
		if err := c.DNS().SetNameservers(ctx, list(o.dns)); err != nil {
			return nil, err
		}
		dns, err := c.DNS().Nameservers(ctx)
		return map[string]any{"dns": dns}, err
	case "list-users":
		users, err := c.Users().List(ctx, nil, nil)
		return map[string]any{"users": users}, err
	}
	return nil, fmt.Errorf("unknown scenario %q", scenario)
}

func aclRoundTrip(ctx context.Context, c *tailscale.Client, file string) (any, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	before, err := c.PolicyFile().Raw(ctx)
	if err != nil {
		return nil, err
	}
	if before.ETag == "" {
		return nil, errors.New("GET acl carried no ETag")
	}
	if err := c.PolicyFile().Validate(ctx, string(text)); err != nil {
		return nil, err
	}
	if err := c.PolicyFile().Set(ctx, string(text), before.ETag); err != nil {
		return nil, err
	}
	after, err := c.PolicyFile().Raw(ctx)
	if err != nil {
		return nil, err
	}
	if after.HuJSON != string(text) {
		return nil, fmt.Errorf("the policy read back differs from the one set:\n%s", after.HuJSON)
	}
	parsed, err := c.PolicyFile().Get(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"etagBefore": before.ETag,
		"etagAfter":  after.ETag,
		"acls":       len(parsed.ACLs),
		"tagOwners":  parsed.TagOwners,
	}, nil
}
