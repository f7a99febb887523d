from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("chat", "text", "sender", "send_time")
    CHAT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    chat: str
    text: str
    sender: str
    send_time: int
    def __init__(self, chat: _Optional[str] = ..., text: _Optional[str] = ..., sender: _Optional[str] = ..., send_time: _Optional[int] = ...) -> None: ...

class SendRequest(_message.Message):
    __slots__ = ("chat", "text", "sender", "receiver")
    CHAT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    chat: str
    text: str
    sender: str
    receiver: str
    def __init__(self, chat: _Optional[str] = ..., text: _Optional[str] = ..., sender: _Optional[str] = ..., receiver: _Optional[str] = ...) -> None: ...

class SendResponse(_message.Message):
    __slots__ = ("send_time",)
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    send_time: int
    def __init__(self, send_time: _Optional[int] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("chat", "cursor", "limit", "reverse", "wait")
    CHAT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    chat: str
    cursor: int
    limit: int
    reverse: bool
    wait: int
    def __init__(self, chat: _Optional[str] = ..., cursor: _Optional[int] = ..., limit: _Optional[int] = ..., reverse: _Optional[bool] = ..., wait: _Optional[int] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("messages", "has_more", "next_cursor", "history_truncated")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    HISTORY_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    has_more: bool
    next_cursor: int
    history_truncated: bool
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., has_more: _Optional[bool] = ..., next_cursor: _Optional[int] = ..., history_truncated: _Optional[bool] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("chat", "cursor")
    CHAT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    chat: str
    cursor: int
    def __init__(self, chat: _Optional[str] = ..., cursor: _Optional[int] = ...) -> None: ...

class ListChatsRequest(_message.Message):
    __slots__ = ("user", "cursor", "limit")
    USER_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user: str
    cursor: int
    limit: int
    def __init__(self, user: _Optional[str] = ..., cursor: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ChatSummary(_message.Message):
    __slots__ = ("chat", "last_send_time", "last_message")
    CHAT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    chat: str
    last_send_time: int
    last_message: Message
    def __init__(self, chat: _Optional[str] = ..., last_send_time: _Optional[int] = ..., last_message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class ListChatsResponse(_message.Message):
    __slots__ = ("chats", "has_more", "next_cursor")
    CHATS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    chats: _containers.RepeatedCompositeFieldContainer[ChatSummary]
    has_more: bool
    next_cursor: int
    def __init__(self, chats: _Optional[_Iterable[_Union[ChatSummary, _Mapping]]] = ..., has_more: _Optional[bool] = ..., next_cursor: _Optional[int] = ...) -> None: ...

class AdminResponse(_message.Message):
    __slots__ = ("chats_deleted", "messages_deleted")
    CHATS_DELETED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_DELETED_FIELD_NUMBER: _ClassVar[int]
    chats_deleted: int
    messages_deleted: int
    def __init__(self, chats_deleted: _Optional[int] = ..., messages_deleted: _Optional[int] = ...) -> None: ...

class EraseUserResponse(_message.Message):
    __slots__ = ("chats_deleted", "messages_deleted", "done")
    CHATS_DELETED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_DELETED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    chats_deleted: int
    messages_deleted: int
    done: bool
    def __init__(self, chats_deleted: _Optional[int] = ..., messages_deleted: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...
