"""rpc_server: the IMService Thrift server (gevent), storing messages in Redis.

Layers, top to bottom:
    __main__   start-up: configuration, wiring, signals
    server     the gevent connection loop; transport: framing detection
    service    the IMService handler: validation and Thrift responses
    store      Redis streams (send.lua appends); chat_id, paging: pure logic
"""
