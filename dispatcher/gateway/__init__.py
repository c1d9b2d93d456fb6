"""The PanDA-compatible HTTP gateway (``ailuro gateway``): panda-client 2.x in, the dispatcher's gRPC API out."""
