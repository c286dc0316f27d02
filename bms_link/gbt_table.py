"""GB/T 27930-2015 charger-side phases and events as one transition table (the protocol at a glance).

Clause 9 of the standard: handshake -> recognition -> parameter configuration -> charging -> end ->
statistics, plus the error phase entered on a timeout (CEM) or a BMS error report (BEM). `GbtCharger`
(`bms_link.gbt`) drives it; an event a phase does not accept raises `InvalidTransition`.
"""

from __future__ import annotations

from enum import StrEnum

from chargeagent.errors import InvalidTransition

__all__ = ["TRANSITIONS", "Event", "Phase", "next_phase"]


class Phase(StrEnum):
    IDLE = "idle"
    HANDSHAKE = "handshake"
    RECOGNITION = "recognition"
    PARAMETER = "parameter"
    CHARGING = "charging"
    ENDING = "ending"
    STATISTICS = "statistics"
    ENDED = "ended"
    ERROR = "error"


class Event(StrEnum):
    START = "start"
    BHM = "BHM"
    BRM = "BRM"
    BCP = "BCP"
    BRO = "BRO"
    BCL = "BCL"
    BCS = "BCS"
    BSM = "BSM"
    BST = "BST"
    BSD = "BSD"
    BEM = "BEM"
    STOP = "stop"  # our side ends the session (agent, CSMS, implausible data)
    TIMEOUT = "timeout"  # a BMS message did not arrive in time (CEM)
    DONE = "done"  # CSD/CEM repetitions finished


P, E = Phase, Event
_ACTIVE = (P.RECOGNITION, P.PARAMETER, P.CHARGING)
TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    (P.IDLE, E.START): P.HANDSHAKE,
    (P.IDLE, E.STOP): P.IDLE,
    (P.HANDSHAKE, E.BHM): P.RECOGNITION,
    (P.HANDSHAKE, E.STOP): P.ENDED,
    (P.HANDSHAKE, E.TIMEOUT): P.ERROR,
    (P.RECOGNITION, E.BHM): P.RECOGNITION,  # the BMS repeats BHM until it sees CRM
    (P.RECOGNITION, E.BRM): P.RECOGNITION,  # first BRM: CRM switches to 0xAA
    (P.RECOGNITION, E.BCP): P.PARAMETER,
    (P.PARAMETER, E.BRM): P.PARAMETER,
    (P.PARAMETER, E.BCP): P.PARAMETER,
    (P.PARAMETER, E.BRO): P.PARAMETER,  # 0x00 then 0xAA; CRO follows
    (P.PARAMETER, E.BCS): P.PARAMETER,
    (P.PARAMETER, E.BSM): P.PARAMETER,
    (P.PARAMETER, E.BCL): P.CHARGING,  # after CRO 0xAA
    (P.CHARGING, E.BRO): P.CHARGING,
    (P.CHARGING, E.BCL): P.CHARGING,
    (P.CHARGING, E.BCS): P.CHARGING,
    (P.CHARGING, E.BSM): P.CHARGING,
    **{(p, E.BST): P.ENDING for p in _ACTIVE},
    **{(p, E.STOP): P.ENDING for p in _ACTIVE},
    **{(p, E.TIMEOUT): P.ERROR for p in (*_ACTIVE, P.ENDING)},
    **{(p, E.BEM): P.ERROR for p in (P.HANDSHAKE, *_ACTIVE, P.ENDING, P.STATISTICS)},
    **{(P.ENDING, e): P.ENDING for e in (E.BCL, E.BCS, E.BSM, E.BRO, E.BST, E.STOP)},
    (P.ENDING, E.BSD): P.STATISTICS,
    **{(P.STATISTICS, e): P.STATISTICS for e in (E.BST, E.BSD, E.STOP)},
    (P.STATISTICS, E.DONE): P.ENDED,
    (P.ERROR, E.DONE): P.ERROR,
    **{(p, e): p for p in (P.ENDED, P.ERROR) for e in (E.STOP, E.BEM)},
    **{(p, E.START): P.HANDSHAKE for p in (P.ENDED, P.ERROR)},
}


def next_phase(phase: Phase, event: Event) -> Phase:
    """The table lookup; raises `InvalidTransition` for an event the phase does not accept."""
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise InvalidTransition("gbt_charger", phase.value, event.value) from None
