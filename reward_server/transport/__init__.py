"""How calls arrive: the transport-neutral API (``api``: the one scoring path, ``score_message``, and the one table
from domain errors to status codes, ``STATUS_OF`` then ``HTTP_STATUS``), the gRPC servicer (``grpc_servicer``), the
interceptor (auth, limits, request ids, metrics), and the HTTP/JSON transport beside it (``http``): the contract over
Connect's unary JSON, and the reward URLs of OpenRLHF, slime and NeMo Gym (see README: Using it from other trainers).
Both transports call ``api``; neither imports the other."""
