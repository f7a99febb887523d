// The RPC contract between http_server and rpc_server, and for any Thrift
// client that calls rpc_server directly (thriftpy2, Apache Thrift, Kitex).
//
// This is the seed template's IDL, unchanged on the wire: same struct names,
// field names, ids and requiredness, including Pull's argument at field id 2.
// Every extension is an `optional` field with a new id, so that clients
// generated from the template's original file keep working.
//
// Code (SendResponse.Code, PullResponse.Code) uses HTTP-like numbers, as the
// template's stub did (it answered 500 "oops"); Msg says what happened.
//   0    success
//   400  invalid argument (chat form, membership, text size, cursor, limit)
//   422  idempotency-key conflict: the key was used for a different message
//   429  rate limited
//   503  storage unavailable or overloaded; retry later (with the same
//        IdempotencyKey to make a send's retry safe)
//   500  internal error
// The HTTP tier answers with the same number as its status.

namespace go rpc
namespace py rpc

struct Message {
    1: string Chat      // "<member1>:<member2>", as the caller wrote it
    2: string Text      // at most 4096 Unicode code points by default
    3: string Sender    // one of the chat's two members, lowercase on output
    4: i64 SendTime     // microseconds since the epoch, assigned by the server;
                        // unique and strictly increasing within a chat
}

struct SendRequest {
    1: required Message message
    // Additive. A retried send with the same key (within the same chat)
    // returns the first attempt's result and stores nothing new. Reusing a
    // key for a different sender or text gets Code 422. Keys expire after
    // IDEMPOTENCY_TTL_S seconds (24 h by default). 1-128 printable ASCII.
    2: optional string IdempotencyKey
    // Additive: the caller's request id (HTTP X-Request-ID), for the logs.
    3: optional string RequestId
}

struct SendResponse {
    1: required i32 Code
    2: required string Msg
    // Additive: the send_time assigned to the stored message (Code 0 only).
    3: optional i64 SendTime
    // Additive: with Code 429, how long to wait before sending again.
    4: optional i32 RetryAfterMs
}

struct PullRequest {
    1: required string Chat
    // A send_time, inclusive. Ascending: messages with SendTime >= Cursor,
    // 0 = from the oldest. Reverse: messages with SendTime <= Cursor,
    // 0 = from the newest. Not an offset.
    2: required i64 Cursor
    // 0 means 10; values above the server's maximum (100) are clamped.
    3: required i32 Limit
    4: optional bool Reverse    // false (default): oldest first
    5: optional string RequestId    // additive, as in SendRequest
}

struct PullResponse {
    1: required i32 Code
    2: required string Msg
    3: optional list<Message> Messages
    4: optional bool HasMore        // exact: true iff another message exists
    5: optional i64 NextCursor      // SendTime of the first message not
                                    // returned; 0 when HasMore is false
}

// Additive: a cheap call for readiness checks and load balancers.
struct HealthRequest {
    1: optional bool SkipStorage    // true: answer without asking Redis
    2: optional string RequestId
}

struct HealthResponse {
    1: required i32 Code            // 0 ready; 503 Redis is not reachable
    2: required string Msg
    3: optional string Storage      // "ok", "unavailable: <why>" or "skipped"
}

service IMService {
    SendResponse Send(1: SendRequest req)
    PullResponse Pull(2: PullRequest req)
    HealthResponse Health(1: HealthRequest req)
}
