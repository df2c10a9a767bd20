"""Development and test tooling, apart from the service: nothing here runs in a production worker.

- ``broker``: the embedded Kafka-protocol broker (Tansu) for ``partner-stream dev``, the tests and the benches;
- ``local``: loopback worker processes (the one definition of their settings and of "ready");
- ``samples``: an OrderService stand-in that publishes order events (``partner-stream order ...``);
- ``central_hub_standin``: CentralHub's accept/reject API for the board, installed only in the dev stack.
"""
