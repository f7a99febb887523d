package main

import (
	"errors"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/retry"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/transport"
	etcd "github.com/kitex-contrib/registry-etcd"
)

// The README's Kitex snippet is this file, between the markers (a test checks).

// README-SNIPPET-START
// clientOptions: what a Kitex client needs to call our RPC server, in any
// transport it accepts. With TTHeader, the header carries the caller's
// service name, its RPC timeout (Kitex >= 0.9) and the metainfo request id,
// which the server logs.
func clientOptions(transportName string, timeout time.Duration) []client.Option {
	opts := []client.Option{
		client.WithRPCTimeout(timeout),
		client.WithClientBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: "demo.http.server"}),
	}
	switch transportName {
	case "buffered": // Kitex <= 0.12's default
		opts = append(opts, client.WithTransportProtocol(transport.PurePayload))
	case "framed": // Kitex >= 0.13's default
		opts = append(opts, client.WithTransportProtocol(transport.Framed))
	case "ttheader":
		opts = append(opts, client.WithTransportProtocol(transport.TTHeader),
			client.WithMetaHandler(transmeta.ClientTTHeaderHandler),
			client.WithMetaHandler(transmeta.MetainfoClientHandler))
	case "ttheaderframed":
		opts = append(opts, client.WithTransportProtocol(transport.TTHeaderFramed),
			client.WithMetaHandler(transmeta.ClientTTHeaderHandler),
			client.WithMetaHandler(transmeta.MetainfoClientHandler))
	}
	return opts
}

// resolvedBy: find the servers through the registrations they write in etcd
// (ETCD_ENDPOINTS), with Kitex's own resolver, instead of client.WithHostPorts.
// A server that stops deregisters first, but the resolver's cache may still
// name it for a few seconds: a call that cannot connect to it (nothing was
// sent) is made again on another server. Nothing else is retried: a send
// that may have arrived is the caller's to retry, with an IdempotencyKey.
func resolvedBy(endpoint string) []client.Option {
	resolver, err := etcd.NewEtcdResolver([]string{endpoint})
	if err != nil {
		panic(err)
	}
	policy := retry.NewFailurePolicy()
	policy.ShouldResultRetry = &retry.ShouldResultRetry{
		NotRetryForTimeout: true,
		ErrorRetry: func(err error, _ rpcinfo.RPCInfo) bool {
			return errors.Is(err, kerrors.ErrGetConnection)
		},
	}
	return []client.Option{client.WithResolver(resolver), client.WithFailureRetry(policy)}
}

// README-SNIPPET-END
