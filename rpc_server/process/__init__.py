"""Processes: one server process wired together (worker: Redis client,
store, service, Thrift server), a supervisor of several sharing one port,
and the etcd registration. The only place that knows every layer; nothing
but rpc_server.__main__ imports it.
"""
