"""Generated Python code for the reward.v1 protobuf package (do not edit; see Makefile: proto)."""
