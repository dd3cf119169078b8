"""The server's HTTP/JSON transport beside gRPC: the contract over Connect's unary JSON, and the reward URLs of
OpenRLHF, slime and NeMo Gym (see README: Using it from other trainers). Every route ends in the gRPC servicer's
scoring API (``servicer.score_message``), so both transports share one validation and one error mapping."""
