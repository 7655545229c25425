"""The caller's keypad: a DTMF menu and digit collection, as a pure state machine.

`Keypad.press(digit, t)` and `Keypad.timeout(t)` return what the keys mean (`KeyAction`s) and
when to be asked again (`deadline`); the turn controller turns them into commands. Like the
controller it has no clock and does no I/O, so its tests are instant sequences of presses.

Two modes: the menu (a key picks an option), and collecting (keys build a number until the
terminator, `max_length` keys, or a pause of `inter_digit_s`; no key for `timeout_s` says the
prompt again, `reprompts` times, then gives up with an empty value).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from agent.dialog.dialplan import DigitCollect, Menu

log = structlog.get_logger("session")


@dataclass(frozen=True)
class KeySay:
    text: str


@dataclass(frozen=True)
class KeyTransfer:
    target: str  # the dialplan's transfer target key


@dataclass(frozen=True)
class KeySwitch:
    dialplan: str


@dataclass(frozen=True)
class KeyHangup:
    pass


@dataclass(frozen=True)
class KeyCollected:
    name: str
    value: str | None  # None: nothing usable was entered


KeyAction = KeySay | KeyTransfer | KeySwitch | KeyHangup | KeyCollected


class Keypad:
    """One per call. `deadline` is when `timeout` wants to be called (None: not needed)."""

    def __init__(self, menu: Menu | None, collect: dict[str, DigitCollect]) -> None:
        self.menu = menu
        self.collect = collect
        self.deadline: float | None = None
        self._name: str | None = None  # the number being collected
        self._digits = ""
        self._reprompts = 0

    @property
    def active(self) -> bool:
        """Keys mean something now (a menu, or a number being collected)."""
        return self.menu is not None or self._name is not None

    def press(self, digit: str, t: float) -> list[KeyAction]:
        if self._name is not None:
            return self._collect_key(digit, t)
        if self.menu is None:
            log.info("dtmf ignored: no menu", digit=digit)
            return []
        option = self.menu.options.get(digit)
        log.info(
            "dtmf menu", digit=digit, option=option.model_dump(exclude_defaults=True) if option else None
        )
        if option is None:
            return [KeySay(f"{self.menu.invalid} {self.menu.prompt}")]
        if option.say is not None:
            return [KeySay(option.say)]
        if option.transfer is not None:
            return [KeyTransfer(option.transfer)]
        if option.dialplan is not None:
            return [KeySwitch(option.dialplan)]
        if option.collect is not None:
            return self.start_collecting(option.collect, t)
        if option.hangup:
            return [KeyHangup()]
        return [KeySay(self.menu.prompt)]  # repeat

    def start_collecting(self, name: str, t: float) -> list[KeyAction]:
        self._name, self._digits, self._reprompts = name, "", 0
        spec = self.collect[name]
        self.deadline = t + spec.timeout_s
        return [KeySay(spec.prompt)]

    def timeout(self, t: float) -> list[KeyAction]:
        if self._name is None or self.deadline is None or t < self.deadline:
            return []
        spec = self.collect[self._name]
        if self._digits:  # a pause after some keys ends the entry
            return self._finish()
        if self._reprompts < spec.reprompts:
            self._reprompts += 1
            self.deadline = t + spec.timeout_s
            return [KeySay(spec.prompt)]
        return self._finish()

    def _collect_key(self, digit: str, t: float) -> list[KeyAction]:
        spec = self.collect[self._name or ""]
        if spec.terminator is not None and digit == spec.terminator:
            return self._finish()
        self._digits += digit
        if len(self._digits) >= spec.max_length:
            return self._finish()
        self.deadline = t + spec.inter_digit_s
        return []

    def _finish(self) -> list[KeyAction]:
        name, digits = self._name or "", self._digits
        spec = self.collect[name]
        self._name, self._digits, self.deadline = None, "", None
        value = digits if len(digits) >= spec.min_length else None
        log.info("dtmf collected", name=name, value=value)
        if value is None:
            return [KeyCollected(name, None), KeySay(spec.failed)]
        said = f"You entered {', '.join(value)}. {spec.done}" if spec.readback else spec.done
        return [KeyCollected(name, value), KeySay(said)]
