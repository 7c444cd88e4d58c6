"""Pure code both sides import: CPU lists, thread modes, the topology document,
tracker wire framing. Nothing here imports TVM, reads the board or opens sockets
on import, so `host_client` never needs `edge_server` and vice versa."""
