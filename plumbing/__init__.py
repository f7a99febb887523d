"""Plumbing both servers need, written once: settings from environment
variables and flags (settings), JSON log lines (logs), metric children looked up once
(metric_children), how many CPUs a
process may use (cpus), and the etcd key layout of Kitex's registry
(kitex_etcd).

It owns no part of the domain and no storage: it imports neither server
(rpc_server, http_server), nor idl, nor Redis; both servers import it.
"""
