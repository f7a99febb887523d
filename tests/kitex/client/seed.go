package main

import (
	"context"

	"github.com/cloudwego/kitex/client"

	"imtest/kitexclient/seed_gen/rpc"
	"imtest/kitexclient/seed_gen/rpc/imservice"
)

// seedCaller: a client generated from the seed template's IDL, which knows
// none of our optional fields.
type seedCaller struct{ cli imservice.Client }

func newSeedCaller(opts []client.Option) (caller, error) {
	cli, err := imservice.NewClient("demo.rpc.server", opts...)
	return seedCaller{cli}, err
}

func (s seedCaller) Send(ctx context.Context, op Op) Result {
	resp, err := s.cli.Send(ctx, &rpc.SendRequest{Message: &rpc.Message{Chat: op.Chat, Text: op.Text, Sender: op.Sender}})
	if err != nil {
		return Result{Err: err.Error()}
	}
	return Result{Code: resp.Code, Msg: resp.Msg}
}

func (s seedCaller) Pull(ctx context.Context, op Op) Result {
	req := &rpc.PullRequest{Chat: op.Chat, Cursor: op.Cursor, Limit: op.Limit}
	if op.Reverse {
		req.Reverse = &op.Reverse
	}
	resp, err := s.cli.Pull(ctx, req)
	if err != nil {
		return Result{Err: err.Error()}
	}
	result := Result{Code: resp.Code, Msg: resp.Msg, HasMore: resp.GetHasMore(), NextCursor: resp.GetNextCursor()}
	for _, m := range resp.Messages {
		result.Messages = append(result.Messages, Message{m.Chat, m.Text, m.Sender, m.SendTime})
	}
	return result
}
