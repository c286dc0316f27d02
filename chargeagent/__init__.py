"""chargeagent core: errors, clock, config and logging shared by station, bms_link, policy, simulators."""

__version__ = "0.1.0"
