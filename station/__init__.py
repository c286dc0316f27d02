"""The station agent: OCPP charge point, BMS link wiring, CLI."""
