"""A SIP endpoint answering `echo` in a process of its own (no models), for tests that may kill
or abort it: `python -m tests.sip_echo_server PORT` prints "ready" and runs until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from agent.sipconfig import SipConfig
from agent.telephony.call import CallHandler, CallInfo
from agent.telephony.echo import echo_handler
from agent.telephony.limits import CallLimiter
from agent.telephony.sip import SipEndpoint


async def main(port: int) -> None:
    cfg = SipConfig(host="127.0.0.1", port=port, rtp_port=0, transports=["udp"])
    handler = echo_handler(0.2)

    def route(info: CallInfo) -> CallHandler | None:
        return handler if info.to_user == "echo" else None

    endpoint = SipEndpoint(cfg, route, CallLimiter(cfg.max_calls))
    await endpoint.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await endpoint.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
