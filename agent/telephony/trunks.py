"""Which of the configured trunks (carriers, PBXs: `sip.trunks`) a caller's address belongs to."""

from __future__ import annotations

from collections.abc import Mapping

from agent.sipconfig import TrunkConfig
from agent.telephony.admission import inside, networks, source_host


class Trunks:
    """The trunks' networks, parsed once; `of` is called for every new call."""

    def __init__(self, trunks: Mapping[str, TrunkConfig]) -> None:
        self._nets = {name: networks(t.allow) for name, t in trunks.items()}

    def of(self, address: str) -> frozenset[str]:
        """The names of the trunks whose networks hold `address` ("host", "host:port")."""
        host = source_host(address)
        return frozenset(name for name, nets in self._nets.items() if inside(host, nets))
