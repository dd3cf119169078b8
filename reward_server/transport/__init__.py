"""How calls arrive: the gRPC servicer (``grpc_servicer``, with the one table from domain errors to status codes),
the interceptor (auth, limits, request ids, metrics), and the HTTP/JSON transport beside it: the contract over
Connect's unary JSON, and the reward URLs of OpenRLHF, slime and NeMo Gym (see README: Using it from other trainers).
Every HTTP route ends in the gRPC servicer's scoring API (``grpc_servicer.score_message``), so both transports share
one validation and one error mapping."""
