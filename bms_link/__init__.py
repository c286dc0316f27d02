"""BMS transports (CAN/GB-T 27930, MQTT) behind one small interface, with transport-agnostic models."""
