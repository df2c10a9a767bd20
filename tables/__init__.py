"""The pending-orders table: its value model, pure state transitions and read-only queries."""
