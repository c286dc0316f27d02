"""Sans-I/O OCPP state: connectors, transactions, boot/heartbeat, smart-charging limits."""
