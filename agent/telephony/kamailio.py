"""Kamailio as the SIP front of a multi-process agent: a real proxy, from Debian's package.

Why: pjsua (in every pjsua2 build on PyPI) is compiled with PJSUA_MAX_CALLS = 4, so one
process answers at most 4 calls. Past that, `voice-agent serve` runs several agent workers on
loopback ports and Kamailio spreads INVITEs over them (round robin), trying the next worker
when one answers 486 (full), 5xx or times out, and skipping a worker that stops answering its
OPTIONS probes (killed or hung) until it answers again. It record-routes, so in-dialog requests (ACK,
re-INVITE, BYE both ways) pass through it; RTP goes straight between caller and worker.
A worker's own outgoing calls (the API's, a warm transfer's) leave through it the same way.

It is also the edge against the open internet (`sip.edge` puts it in front of a single worker
too): SIP scanners' requests (by User-Agent) and, with `sip.access.allow`, outsiders' INVITEs
are dropped or refused; `pike` drops every request of a source past `limits.requests_per_s`;
a source's new INVITEs past its call rate get 503 with Retry-After (counted in 2 s windows in
an `htable`). So a flood stops here, and the workers see only what they can take.
"""

from __future__ import annotations

import glob
import math
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from agent.errors import StartupError
from agent.sipconfig import SipConfig

CALLER_HEADER = "X-Voice-Agent-Caller"  # the caller's address, for the workers' trunk rules
MODULES = ("kex", "corex", "tm", "tmx", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog",
           "sanity", "dispatcher", "pike", "htable", "ipops", "dialog", "auth")  # fmt: skip
WINDOW_S = 2  # the per-source call count's window


class KamailioError(StartupError):
    """Kamailio is missing or rejected the generated configuration."""


def module_dir() -> str:
    for pattern in (
        "/usr/lib/*/kamailio/modules",
        "/usr/lib/kamailio/modules",
        "/usr/local/lib*/kamailio/modules",
    ):
        for d in glob.glob(pattern):
            if Path(d, "dispatcher.so").exists():
                return d
    raise KamailioError("Kamailio modules not found: install Debian's kamailio package (make setup does)")


def render_config(cfg: SipConfig, worker_ports: list[int], runtime: Path) -> Path:
    """Write kamailio.cfg and the dispatcher list into `runtime`; return the config path."""
    runtime.mkdir(parents=True, exist_ok=True)
    targets = runtime / "dispatcher.list"
    targets.write_text("".join(f"1 sip:127.0.0.1:{p}\n" for p in worker_ports))
    listen = "\n".join(f"listen={t}:{cfg.host}:{cfg.port}" for t in cfg.transports)
    advertise = f" advertise {cfg.public_address}:{cfg.port}" if cfg.public_address else ""
    if advertise:
        listen = "\n".join(line + advertise for line in listen.splitlines())
    # Workers listen on 127.0.0.1: a front bound to one other address must reach loopback too.
    if cfg.host not in ("127.0.0.1", "0.0.0.0", "::"):
        listen += f"\nlisten=udp:127.0.0.1:{cfg.port}"
    loads = "\n".join(f'loadmodule "{m}.so"' for m in MODULES)
    ports = " || ".join(f"$sp == {p}" for p in worker_ports)
    from_worker = f'($si == "127.0.0.1" && ({ports}))'
    lim, access = cfg.limits, cfg.access
    per_window = max(lim.per_source_burst, math.ceil(lim.per_source_calls_per_s * WINDOW_S))
    scanners = "|".join(re.escape(s.lower()) for s in access.scanner_agents) or "^$no-scanner"
    outsider = "exit;" if access.outsiders == "drop" else 'sl_send_reply("403", "Forbidden"); exit;'
    allow = _source_in(access.allow)
    auth_users, auth_check = "", ""
    if access.auth is not None:
        realm = access.auth.realm
        auth_users = "\n".join(f'    $sht(users=>{u}) = "{ha1}";' for u, ha1 in access.auth.users.items())
        # Every unauthenticated INVITE is challenged before any user is looked up, and a wrong
        # password and an unknown user both get the same fresh challenge: nothing tells them apart.
        auth_check = f"""
        if (!pv_proxy_authenticate("{realm}", "$sht(users=>$au)", "1")) {{
            proxy_challenge("{realm}", "0");
            exit;
        }}
        consume_credentials();"""
    concurrent = ""
    if lim.calls_per_source:
        concurrent = f"""
        if (get_profile_size("caller", "$si", "$var(n)") && $var(n) >= {lim.calls_per_source}) {{
            sl_send_reply("486", "Too many calls from your address");
            exit;
        }}
        dlg_manage();
        set_dlg_profile("caller", "$si");"""
    rate_check = f"""$var(key) = $si + ":" + ($Ts / {WINDOW_S});
        if ($shtinc(calls=>$var(key)) > {per_window}) {{
            append_to_reply("Retry-After: {WINDOW_S}\\r\\n");
            sl_send_reply("503", "Too many calls from your address");
            exit;
        }}{concurrent}"""
    if lim.trusted:  # trusted sources (a PBX, a trunk) have no per-source rate
        rate_check = f"if (!({_source_in(lim.trusted)})) {{\n            {rate_check}\n        }}"
    path = runtime / "kamailio.cfg"
    path.write_text(f"""#!KAMAILIO
# Generated by voice-agent: the SIP front that spreads calls over agent workers.
debug=1
log_stderror=yes
fork=yes
# One UDP worker: two may relay a call's 180 and 200 out of order (phones shrug, strict
# UAs like SIPp abort the call); a front's signalling load is small.
children=1
tcp_children=2
auto_aliases=no
server_header="Server: {cfg.user_agent} (kamailio front)"
{listen}
mpath="{module_dir()}"
{loads}
modparam("dispatcher", "list_file", "{targets}")
modparam("dispatcher", "flags", 2)
# Each worker is probed with OPTIONS every second: one that does not answer (killed, hung) is
# skipped by new calls after about fr_timer + 1 s, and taken back at its first 200.
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_from", "sip:front@127.0.0.1")
modparam("tm", "fr_timer", 3000)
modparam("tm", "fr_inv_timer", 60000)
modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 0)
modparam("pike", "sampling_time_unit", {WINDOW_S})
modparam("pike", "reqs_density_per_unit", {math.ceil(lim.requests_per_s * WINDOW_S)})
modparam("pike", "remove_latency", {2 * WINDOW_S})
modparam("htable", "htable", "calls=>size=10;autoexpire={2 * WINDOW_S};")
modparam("htable", "htable", "users=>size=4;")
modparam("dialog", "profiles_with_value", "caller")
modparam("dialog", "default_timeout", 3600)  # a call whose BYE never came counts for an hour

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (!sanity_check("17895", "7")) {{ xlog("L_WARN", "malformed request from $si dropped\\n"); exit; }}
    if (!has_totag() && {from_worker}) {{  # a worker's own call going out (API, warm transfer)
        remove_hf("Route");  # the worker's preloaded route to us: the request goes to its R-URI
        if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
        if (is_method("INVITE")) record_route();
        if (!t_relay()) sl_reply_error();
        exit;
    }}
    if ($ua != $null && $(ua{{s.tolower}}) =~ "{scanners}") {{
        xlog("L_DBG", "scanner '$ua' from $si dropped\\n");  # no log line per packet of a flood
        exit;
    }}
    if (!has_totag() && !pike_check_req()) {{ xlog("L_DBG", "request flood from $si dropped\\n"); exit; }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{ sl_send_reply("200", "OK"); exit; }}
    if (has_totag()) {{
        if (is_method("INFO") && $cT == "application/dtmf") {{  # the key alone: pjsua reads only dtmf-relay
            $var(key) = $(rb{{s.trim}}{{s.substr,0,1}});
            set_body("Signal=$var(key)\r\nDuration=160\r\n", "application/dtmf-relay");
        }}
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
    t_check_trans();
    if (is_method("REGISTER|SUBSCRIBE|PUBLISH")) {{ sl_send_reply("405", "Method Not Allowed"); exit; }}
    if (is_method("INVITE")) {{
        {f"if (!({allow})) {{ {outsider} }}" if allow else "# no allow-list: anyone may call"}{auth_check}
        {rate_check}
        remove_hf("{CALLER_HEADER}");  # only the front says where a call came from
        append_hf("{CALLER_HEADER}: $si\\r\\n");
        record_route();
    }}
    if (!ds_select_dst("1", "4")) {{ sl_send_reply("503", "No agent workers"); exit; }}
    t_on_failure("NEXT_WORKER");
    if (!t_relay()) sl_reply_error();
}}

{f"event_route[htable:mod-init] {{{chr(10)}{auth_users}{chr(10)}}}" if auth_users else ""}

failure_route[NEXT_WORKER] {{
    if (t_is_canceled()) exit;
    if (t_check_status("486|408|500|503") && ds_next_dst()) {{
        t_on_failure("NEXT_WORKER");
        t_relay();
    }}
}}
""")
    return path


def _source_in(networks: list[str]) -> str:
    """A Kamailio condition: the request's source address is in one of `networks` (CIDRs)."""
    return " || ".join(f'is_in_subnet("$si", "{net}")' for net in networks)


def start(config: Path, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """Start Kamailio in the foreground (its children die with it); check the config first."""
    binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise KamailioError(f"kamailio rejected {config}:\n{check.stderr[-2000:]}")
    pid_file = config.parent / "kamailio.pid"
    return subprocess.Popen(
        [binary, "-DD", "-E", "-f", str(config), "-P", str(pid_file)],
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec_fn,
    )
