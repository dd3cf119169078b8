"""Generated protobuf and gRPC code, importable as ``reward.v1`` to mirror the proto package."""
