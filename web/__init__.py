"""HTTP and WebSocket edge of partner-stream: wire protocols, hub and static client."""
