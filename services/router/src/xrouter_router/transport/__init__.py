"""The router's gRPC shell: proto <-> domain translation, the error table, the server."""
