"""Simulators: pack + BMS emulator, embedded CSMS, demo runner, HTML report."""
