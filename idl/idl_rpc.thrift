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
//   401  admin call without the right AdminToken (or the admin API is off)
//   403  the Caller may not do this (not a member of the chat, or sending
//        or listing as somebody else); only when the caller sets Caller
//   409  the chat can take no more messages: its last SendTime is already
//        the largest an i64 holds (far-future data written into it)
//   422  idempotency-key conflict: the key was used for a different message
//   429  rate limited
//   503  storage unavailable or overloaded, or the call's deadline (TimeoutMs)
//        leaves no time; retry later (with the same IdempotencyKey to make
//        a send's retry safe). A Send's Msg says which: "not stored"
//        (nothing was written) or "outcome unknown" (Redis failed mid-write)
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
    // Additive: the authenticated user on whose behalf the call is made (set
    // by the HTTP tier when AUTH_MODE is on). When set, Sender must equal it
    // (else Code 403). Unset: no access check, as in the seed.
    4: optional string Caller
    // Additive: the caller's remaining deadline, in milliseconds, relative
    // (clocks differ between hosts): the server answers within it. A write
    // is started only while enough of it remains to wait for Redis's reply;
    // otherwise Code 503 with a Msg that says "not stored". 0 or less: the
    // deadline has passed (refused, nothing done). Absent: the server's
    // default (RPC_DEFAULT_TIMEOUT_MS). A transport's own timeout (Kitex
    // TTHeader's) also counts: the earlier one wins.
    5: optional i32 TimeoutMs
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
    // Additive: when set, Caller must be a member of Chat (else Code 403).
    6: optional string Caller
    // Additive: long-poll. When the page would be empty (ascending only;
    // with Reverse, Code 400), wait up to this many milliseconds for a
    // message at or after Cursor, then answer as usual (an empty page when
    // none came). Clamped to the server's maximum (30000). To wait for what
    // follows the last message seen, pass its SendTime + 1 as the Cursor.
    7: optional i32 WaitMs
    // Additive: the caller's remaining deadline in ms, as in SendRequest;
    // with WaitMs it covers the wait too.
    8: optional i32 TimeoutMs
}

struct PullResponse {
    1: required i32 Code
    2: required string Msg
    3: optional list<Message> Messages
    4: optional bool HasMore        // exact: true iff another message exists
    5: optional i64 NextCursor      // SendTime of the first message not
                                    // returned; 0 when HasMore is false
    // Additive: true when messages that belong in this page's direction
    // were removed by retention: ascending, some message at or after Cursor
    // was trimmed (it would have come first); reverse, the page reaches the
    // oldest retained message (HasMore false) and older ones were trimmed.
    // Clients tell "no more history" from "history was trimmed" by it.
    6: optional bool HistoryTruncated
}

// Additive: one entry of a user's conversation list.
struct ChatSummary {
    1: string Chat                  // canonical "<member1>:<member2>"
    2: i64 LastSendTime             // send_time of the chat's last message
    3: optional Message LastMessage // absent if the chat has no message left
}

struct ListChatsRequest {
    1: required string User
    // A LastSendTime, inclusive: chats last active at or before it, most
    // recently active first; 0 = from the most recent. Not an offset.
    2: optional i64 Cursor
    3: optional i32 Limit           // 0 means 10; clamped to 100
    4: optional string Caller       // when set, must equal User (else 403)
    5: optional string RequestId
    // Additive: the caller's remaining deadline in ms, as in SendRequest.
    6: optional i32 TimeoutMs
}

struct ListChatsResponse {
    1: required i32 Code
    2: required string Msg
    3: optional list<ChatSummary> Chats
    4: optional bool HasMore
    5: optional i64 NextCursor      // LastSendTime of the first chat not
                                    // returned; 0 when HasMore is false
}

// Additive, admin: delete one chat (its messages, idempotency records, and
// its entry in both members' conversation lists).
struct DeleteChatRequest {
    1: required string Chat
    2: optional string AdminToken   // must equal the server's ADMIN_TOKEN
    3: optional string RequestId
    // Additive: the caller's remaining deadline in ms, as in SendRequest.
    4: optional i32 TimeoutMs
}

// Additive, admin: erase a user: every chat the user is in, as DeleteChat
// does, then the user's own conversation list and rate-limit state. Finding
// the chats scans the keyspace, so a call works for about BudgetMs, then
// answers Done false: call again (any RPC server) and it resumes where it
// stopped; the counts are those of this call.
struct EraseUserRequest {
    1: required string User
    2: optional string AdminToken
    3: optional string RequestId
    4: optional i32 BudgetMs        // how long to work: 1..60000; absent or
                                    // 0: 60000 (as a caller that does not
                                    // know of Done expects it all done)
    // Additive: the caller's remaining deadline in ms, as in SendRequest.
    5: optional i32 TimeoutMs
}

struct AdminResponse {
    1: required i32 Code
    2: required string Msg
    3: optional i32 ChatsDeleted
    4: optional i64 MessagesDeleted
    5: optional bool Done           // EraseUser: false if there is more to
                                    // do (call again); absent means true
}

// Additive: a cheap call for readiness checks and load balancers.
struct HealthRequest {
    1: optional bool SkipStorage    // true: answer without asking Redis
    2: optional string RequestId
    3: optional i32 TimeoutMs        // additive, as in SendRequest
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
    ListChatsResponse ListChats(1: ListChatsRequest req)
    AdminResponse DeleteChat(1: DeleteChatRequest req)
    AdminResponse EraseUser(1: EraseUserRequest req)
}
