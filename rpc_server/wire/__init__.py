"""The Thrift wire: which framing a connection speaks, reading each call
whole under its deadline, checking its size and shape before thriftpy2
decodes it, and the gevent connection loop that hands calls to a handler.

It knows bytes and Thrift messages, not the domain: it imports neither
rpc_server.service nor rpc_server.storage.
"""
