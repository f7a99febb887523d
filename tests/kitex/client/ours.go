package main

import (
	"context"

	"github.com/cloudwego/kitex/client"

	"imtest/kitexclient/ours_gen/rpc"
	"imtest/kitexclient/ours_gen/rpc/imservice"
)

// ourCaller: a client generated from idl/idl_rpc.thrift, with its optional fields.
type ourCaller struct{ cli imservice.Client }

func newOurCaller(opts []client.Option) (caller, error) {
	cli, err := imservice.NewClient("demo.rpc.server", opts...)
	return ourCaller{cli}, err
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (o ourCaller) Send(ctx context.Context, op Op) Result {
	req := &rpc.SendRequest{
		Message:        &rpc.Message{Chat: op.Chat, Text: op.Text, Sender: op.Sender},
		IdempotencyKey: optional(op.IdempotencyKey),
		Caller:         optional(op.Caller),
	}
	resp, err := o.cli.Send(ctx, req)
	if err != nil {
		return Result{Err: err.Error()}
	}
	return Result{Code: resp.Code, Msg: resp.Msg, SendTime: resp.SendTime, RetryAfterMs: resp.RetryAfterMs}
}

func (o ourCaller) Pull(ctx context.Context, op Op) Result {
	req := &rpc.PullRequest{Chat: op.Chat, Cursor: op.Cursor, Limit: op.Limit, WaitMs: op.WaitMs, Caller: optional(op.Caller)}
	if op.Reverse {
		req.Reverse = &op.Reverse
	}
	resp, err := o.cli.Pull(ctx, req)
	if err != nil {
		return Result{Err: err.Error()}
	}
	result := Result{Code: resp.Code, Msg: resp.Msg, HasMore: resp.GetHasMore(), NextCursor: resp.GetNextCursor()}
	for _, m := range resp.Messages {
		result.Messages = append(result.Messages, Message{m.Chat, m.Text, m.Sender, m.SendTime})
	}
	return result
}

func (o ourCaller) DeleteChat(ctx context.Context, op Op) Result {
	resp, err := o.cli.DeleteChat(ctx, &rpc.DeleteChatRequest{Chat: op.Chat, AdminToken: optional(op.AdminToken)})
	if err != nil {
		return Result{Err: err.Error()}
	}
	return Result{Code: resp.Code, Msg: resp.Msg}
}
