"""OPA's `sprintf`, for the embedded engine: Go's fmt.Sprintf on Rego values.

regorus 0.13 implements `sprintf` itself and differs from OPA on flags and widths: `%-40s`
prints "40s" and drops its argument, `%10s` does not pad, `%-5d` and `%8.3f` are errors, `%o`
prints "0O10". Policies written for OPA use these (Scalr's templates pad addresses with
`%-40s`), so the embedded engine registers this function in place of its own.

OPA converts each argument the way `topdown/strings.go` does: an integral number to int64 (a
larger one to *big.Int), any other number to float64, a string to a Go string, and anything
else (booleans, null, arrays, objects, sets) to the term's Rego text; then Go formats them.
This module follows Go's fmt (print.go, format.go) and strconv for those four Go types,
including its error strings (`%!d(string=x)`, `%!s(MISSING)`, `%!(EXTRA …)`). Checked against
OPA in tests/test_rego_conformance.py.
"""

from __future__ import annotations

import math
import struct
import unicodedata
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

_INT64 = (-(2**63), 2**63 - 1)


class GoInt(int):
    """A number OPA hands to Go as int64 (or *big.Int when it does not fit)."""

    @property
    def go_type(self) -> str:
        return "int64" if _INT64[0] <= self <= _INT64[1] else "*big.Int"


def go_arguments(values: list) -> list[Any]:
    """OPA's conversion of sprintf's operands to Go values."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, bool) or value is None or isinstance(value, (list, dict, set, frozenset, tuple)):
            out.append(rego_text(value))
        elif isinstance(value, int):
            out.append(GoInt(value))
        elif isinstance(value, float):
            text = repr(value)
            if ("e" in text and "." not in text) or not math.isfinite(value):
                out.append(_float_text(value))  # OPA 1.x passes "1e-07" on as its text
            elif value.is_integer():
                out.append(GoInt(int(value)))
            else:
                out.append(value)
        else:
            out.append(str(value))
    return out


def sprintf(fmt: str, values: list) -> str:
    """`sprintf(fmt, values)` as OPA computes it."""
    return go_sprintf(str(fmt), go_arguments(list(values)))


# -- Rego values as OPA prints terms --------------------------------------------------------
_TYPE_ORDER = {
    type(None): 0,
    bool: 1,
    int: 2,
    float: 2,
    str: 3,
    list: 4,
    tuple: 4,
    dict: 5,
    set: 6,
    frozenset: 6,
}


def _sort_key(value: Any) -> tuple:
    rank = _TYPE_ORDER.get(type(value), 7)
    if rank in (0, 1, 2, 3):
        return (rank, value if value is not None else 0)
    if rank == 4:
        return (rank, len(value), tuple(_sort_key(v) for v in value))
    if rank == 5:
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        return (rank, len(items), tuple((_sort_key(k), _sort_key(v)) for k, v in items))
    return (rank, len(value), tuple(sorted(_sort_key(v) for v in value)))


def rego_text(value: Any) -> str:
    """A Rego value as OPA's term String(): JSON-like, strings Go-quoted, keys and sets sorted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(rego_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        return "{" + ", ".join(f"{rego_text(k)}: {rego_text(v)}" for k, v in items) + "}"
    if isinstance(value, (set, frozenset)):
        if not value:
            return "set()"
        return "{" + ", ".join(rego_text(v) for v in sorted(value, key=_sort_key)) + "}"
    return str(value)


def _float_text(value: float) -> str:
    """A float as JSON wrote it (stackward's input goes through json.dumps): OPA keeps that text."""
    if value.is_integer() and "e" not in repr(value):
        return str(int(value))
    return repr(value)


# -- Go's strconv.Quote -----------------------------------------------------------------------
_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _printable(ch: str) -> bool:
    if ch == " ":
        return True
    return unicodedata.category(ch)[0] in "LMNPS"


def go_quote(text: str, ascii_only: bool = False) -> str:
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _printable(ch) and (ord(ch) < 0x80 or not ascii_only):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _can_backquote(text: str) -> bool:
    return all(
        ch != "`" and ch != "\ufeff" and (ch == "\t" or (ord(ch) >= 0x20 and ch != "\x7f")) for ch in text
    )


# -- Go's fmt ------------------------------------------------------------------------------------
@dataclass
class _Flags:
    plus: bool = False
    minus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    plus_v: bool = False
    sharp_v: bool = False
    wid: int = 0
    wid_present: bool = False
    prec: int = 0
    prec_present: bool = False


def _go_type(arg: Any) -> str:
    if isinstance(arg, GoInt):
        return arg.go_type
    if isinstance(arg, float):
        return "float64"
    return "string"


class _Printer:
    def __init__(self) -> None:
        self.buf: list[str] = []
        self.f = _Flags()

    # padding --------------------------------------------------------------------------------
    def padding(self, n: int) -> None:
        if n > 0:
            self.buf.append(("0" if self.f.zero and not self.f.minus else " ") * n)

    def pad(self, text: str) -> None:
        f = self.f
        if not f.wid_present or f.wid == 0:
            self.buf.append(text)
            return
        width = f.wid - len(text)
        if not f.minus:
            self.padding(width)
            self.buf.append(text)
        else:
            self.buf.append(text)
            self.padding(width)

    # strings ----------------------------------------------------------------------------------
    def truncate(self, text: str) -> str:
        if self.f.prec_present:
            return text[: self.f.prec]
        return text

    def fmt_s(self, text: str) -> None:
        self.pad(self.truncate(text))

    def fmt_q(self, text: str) -> None:
        text = self.truncate(text)
        if self.f.sharp and _can_backquote(text):
            self.pad("`" + text + "`")
        else:
            self.pad(go_quote(text, ascii_only=self.f.plus))

    def fmt_sx(self, data: bytes, upper: bool) -> None:
        f = self.f
        digits = "0123456789ABCDEFX" if upper else "0123456789abcdefx"
        length = len(data)
        if f.prec_present and f.prec < length:
            length = f.prec
        width = 2 * length
        if width > 0:
            if f.space:
                if f.sharp:
                    width *= 2
                width += length - 1
            elif f.sharp:
                width += 2
        else:
            if f.wid_present:
                self.padding(f.wid)
            return
        if f.wid_present and f.wid > width and not f.minus:
            self.padding(f.wid - width)
        out = []
        if f.sharp:
            out.append("0" + digits[16])
        for i in range(length):
            if f.space and i > 0:
                out.append(" ")
                if f.sharp:
                    out.append("0" + digits[16])
            out.append(digits[data[i] >> 4] + digits[data[i] & 0xF])
        self.buf.append("".join(out))
        if f.wid_present and f.wid > width and f.minus:
            self.padding(f.wid - width)

    def fmt_string(self, text: str, verb: str) -> None:
        if verb == "v":
            if self.f.sharp_v:
                self.fmt_q(text)
            else:
                self.fmt_s(text)
        elif verb == "s":
            self.fmt_s(text)
        elif verb in "xX":
            self.fmt_sx(text.encode(), verb == "X")
        elif verb == "q":
            self.fmt_q(text)
        else:
            self.bad_verb(verb, text)

    # integers ---------------------------------------------------------------------------------
    def fmt_integer(self, value: int, base: int, verb: str, upper: bool = False) -> None:
        f = self.f
        negative = value < 0
        u = -value if negative else value
        prec = 0
        if f.prec_present:
            prec = f.prec
            if prec == 0 and u == 0:
                zero, f.zero = f.zero, False
                self.padding(f.wid)
                f.zero = zero
                return
        elif f.zero and not f.minus and f.wid_present:
            prec = f.wid
            if negative or f.plus or f.space:
                prec -= 1
        digits = _digits(u, base, upper)
        if len(digits) < prec:
            digits = "0" * (prec - len(digits)) + digits
        if f.sharp:
            if base == 2:
                digits = "0b" + digits
            elif base == 8:
                if digits[0] != "0":
                    digits = "0" + digits
            elif base == 16:
                digits = ("0X" if upper else "0x") + digits
        if verb == "O":
            digits = "0o" + digits
        if negative:
            digits = "-" + digits
        elif f.plus:
            digits = "+" + digits
        elif f.space:
            digits = " " + digits
        zero, f.zero = f.zero, False
        self.pad(digits)
        f.zero = zero

    def fmt_int_arg(self, value: GoInt, verb: str) -> None:
        big = value.go_type != "int64"
        if big:
            self.fmt_big(value, verb)
            return
        if verb in "vd":
            self.fmt_integer(value, 10, verb)
        elif verb == "b":
            self.fmt_integer(value, 2, verb)
        elif verb in "oO":
            self.fmt_integer(value, 8, verb)
        elif verb == "x":
            self.fmt_integer(value, 16, verb)
        elif verb == "X":
            self.fmt_integer(value, 16, verb, upper=True)
        elif verb == "c":
            self.pad(_rune(value))
        elif verb == "q":
            self.pad(_quote_rune(value, self.f))
        elif verb == "U":
            self.fmt_unicode(value)
        else:
            self.bad_verb(verb, value)

    def fmt_big(self, value: int, verb: str) -> None:
        bases = {"b": 2, "o": 8, "O": 8, "d": 10, "s": 10, "v": 10, "x": 16, "X": 16}
        if verb not in bases:
            self.buf.append(f"%!{verb}(big.Int={value})")
            return
        f = self.f
        base = bases[verb]
        digits = _digits(abs(value), base, verb == "X")
        sign = "-" if value < 0 else "+" if f.plus or f.plus_v else " " if f.space else ""
        prefix = ""
        if f.sharp or f.sharp_v:
            prefix = {2: "0b", 8: "0", 16: "0X" if verb == "X" else "0x"}.get(base, "")
        if verb == "O":
            prefix = "0o"
        zeros = 0
        if f.prec_present:
            if len(digits) < f.prec:
                zeros = f.prec - len(digits)
            elif digits == "0" and f.prec == 0:
                return
        length = len(sign) + len(prefix) + zeros + len(digits)
        if f.wid_present and length < f.wid:
            d = f.wid - length
            if f.minus:
                self.buf.append(sign + prefix + "0" * zeros + digits + " " * d)
                return
            if f.zero and not f.prec_present:
                self.buf.append(sign + prefix + "0" * (zeros + d) + digits)
                return
            self.buf.append(" " * d)
        self.buf.append(sign + prefix + "0" * zeros + digits)

    def fmt_unicode(self, value: int) -> None:
        f = self.f
        prec = 4
        if f.prec_present and f.prec > 4:
            prec = f.prec
        text = "U+" + _digits(value & 0xFFFFFFFFFFFFFFFF, 16, True).rjust(prec, "0")
        if f.sharp and 0 <= value <= 0x10FFFF and _printable(chr(value)):
            text += " '" + chr(value) + "'"
        zero, f.zero = f.zero, False
        self.pad(text)
        f.zero = zero

    # floats ------------------------------------------------------------------------------------
    def fmt_float_arg(self, value: float, verb: str) -> None:
        if verb == "v":
            self.fmt_float(value, "g", -1)
        elif verb in "gG":
            self.fmt_float(value, verb, -1)
        elif verb in "feEF":
            self.fmt_float(value, verb, 6)
        elif verb in "bxX":
            self.fmt_float(value, verb, -1)
        else:
            self.bad_verb(verb, value)

    def fmt_float(self, value: float, verb: str, prec: int) -> None:
        f = self.f
        if f.prec_present:
            prec = f.prec
        num = _format_float(value, verb, prec)
        if num[0] not in "+-":
            num = "+" + num
        if f.space and num[0] == "+" and not f.plus:
            num = " " + num[1:]
        if num[1] in "IN":
            zero, f.zero = f.zero, False
            if num[1] == "N" and not f.space and not f.plus:
                num = num[1:]
            self.pad(num)
            f.zero = zero
            return
        if f.sharp and verb != "b":
            num = _sharp_float(num, verb, prec)
        if f.plus or num[0] != "+":
            if f.zero and not f.minus and f.wid_present and f.wid > len(num):
                self.buf.append(num[0])
                self.padding(f.wid - len(num))
                self.buf.append(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    # errors -------------------------------------------------------------------------------------
    def bad_verb(self, verb: str, arg: Any) -> None:
        self.buf.append(f"%!{verb}({_go_type(arg)}=")
        self.print_arg(arg, "v")  # with the flags given, as Go does
        self.buf.append(")")

    def print_arg(self, arg: Any, verb: str) -> None:
        if verb == "T":
            self.fmt_s(_go_type(arg))
            return
        if verb in "pw":
            self.bad_verb(verb, arg)
            return
        if isinstance(arg, GoInt):
            self.fmt_int_arg(arg, verb)
        elif isinstance(arg, float):
            self.fmt_float_arg(arg, verb)
        else:
            self.fmt_string(arg, verb)


def _digits(u: int, base: int, upper: bool) -> str:
    if u == 0:
        return "0"
    chars = "0123456789ABCDEF" if upper else "0123456789abcdef"
    out = []
    while u:
        u, r = divmod(u, base)
        out.append(chars[r])
    return "".join(reversed(out))


def _rune(value: int) -> str:
    if 0 <= value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
        return chr(value)
    return "\ufffd"


def _quote_rune(value: int, f: _Flags) -> str:
    ch = _rune(value)
    if f.sharp and ch != "\ufffd" and _printable(ch) and ch != "'" and ch != "`":
        return "'" + ch + "'"
    inner = go_quote(ch, ascii_only=f.plus)[1:-1]
    if inner == '\\"':
        inner = '"'
    if ch == "'":
        inner = "\\'"
    return "'" + inner + "'"


# -- strconv.FormatFloat ---------------------------------------------------------------------
def _decimal_digits(
    value: float, significant: int | None = None, decimals: int | None = None
) -> tuple[str, int]:
    """(digits, dp) of |value|: the shortest round-trip digits, or rounded half-even on the
    exact binary value to `significant` digits or to `decimals` places (as Go does)."""
    if value == 0:
        return "", 0
    if significant is None and decimals is None:
        _, digits, exponent = Decimal(repr(abs(value))).as_tuple()
        text = "".join(map(str, digits)).rstrip("0") or "0"
        dp = len(digits) + exponent
        return text, dp
    exact = Decimal(abs(value))
    with localcontext() as ctx:
        ctx.prec = 1100 + (significant or 0) + (decimals or 0)
        ctx.rounding = ROUND_HALF_EVEN
        if significant is not None:
            quantum = Decimal(1).scaleb(exact.adjusted() - significant + 1)
        else:
            quantum = Decimal(1).scaleb(-decimals)
        rounded = exact.quantize(quantum, rounding=ROUND_HALF_EVEN)
    _, digits, exponent = rounded.as_tuple()
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return "", 0
    dp = len("".join(map(str, digits)).lstrip("0")) + exponent
    return text.rstrip("0"), dp


def _fmt_e(neg: bool, digits: str, dp: int, prec: int, verb: str) -> str:
    out = "-" if neg else ""
    first = digits[0] if digits else "0"
    out += first
    if prec > 0:
        rest = digits[1 : prec + 1]
        out += "." + rest + "0" * (prec - len(rest))
    exp = dp - 1 if digits else 0
    out += verb
    out += "-" if exp < 0 else "+"
    exp = abs(exp)
    out += f"{exp:02d}"
    return out


def _fmt_f(neg: bool, digits: str, dp: int, prec: int) -> str:
    out = "-" if neg else ""
    if dp > 0:
        whole = digits[:dp] + "0" * max(0, dp - len(digits))
        out += whole
    else:
        out += "0"
    if prec > 0:
        frac = []
        for i in range(prec):
            j = dp + i
            frac.append(digits[j] if 0 <= j < len(digits) else "0")
        out += "." + "".join(frac)
    return out


def _format_float(value: float, verb: str, prec: int) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if verb == "b":
        return _fmt_b(value)
    if verb in "xX":
        return _fmt_x(value, prec, verb)
    neg = math.copysign(1.0, value) < 0
    shortest = prec < 0
    lower = verb.lower()
    if lower == "f":
        if shortest:
            digits, dp = _decimal_digits(value)
            prec = max(len(digits) - dp, 0)
        else:
            digits, dp = _decimal_digits(value, decimals=prec)
        return _fmt_f(neg, digits, dp, prec)
    if lower == "e":
        if shortest:
            digits, dp = _decimal_digits(value)
            prec = max(len(digits) - 1, 0)
        else:
            digits, dp = _decimal_digits(value, significant=prec + 1)
        return _fmt_e(neg, digits, dp, prec, verb)
    # g, G
    if shortest:
        digits, dp = _decimal_digits(value)
        prec = len(digits)
    else:
        if prec == 0:
            prec = 1
        digits, dp = _decimal_digits(value, significant=prec)
    nd = len(digits)
    eprec = prec
    if eprec > nd and nd >= dp:
        eprec = nd
    if shortest:
        eprec = 6
    exp = dp - 1
    if exp < -4 or exp >= eprec:
        if prec > nd:
            prec = nd
        return _fmt_e(neg, digits, dp, prec - 1, "e" if verb == "g" else "E")
    if prec > dp:
        prec = nd
    return _fmt_f(neg, digits, dp, max(prec - dp, 0))


def _sharp_float(num: str, verb: str, prec: int) -> str:
    """Go's `#` flag on a formatted float: keep the point and trailing zeros."""
    digits = 0
    if verb in "vgGx":
        digits = 6 if prec == -1 else prec
    tail = ""
    has_point = False
    saw_nonzero = False
    i = 1
    while i < len(num):
        ch = num[i]
        if ch == ".":
            has_point = True
        elif ch in "pP" or (ch in "eE" and verb not in "xX"):
            num, tail = num[:i], num[i:]
            break
        else:
            if ch != "0":
                saw_nonzero = True
            if saw_nonzero:
                digits -= 1
        i += 1
    if not has_point:
        if len(num) == 2 and num[1] == "0":
            digits -= 1
        num += "."
    if digits > 0:
        num += "0" * digits
    return num + tail


def _float_bits(value: float) -> tuple[bool, int, int]:
    """(negative, mantissa, unbiased exponent) as strconv reads a float64."""
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    neg = bool(bits >> 63)
    exp = (bits >> 52) & 0x7FF
    mant = bits & ((1 << 52) - 1)
    if exp == 0:
        exp += 1
    else:
        mant |= 1 << 52
    return neg, mant, exp - 1023


def _fmt_b(value: float) -> str:
    neg, mant, exp = _float_bits(value)
    exp -= 52
    return ("-" if neg else "") + f"{mant}p{'-' if exp < 0 else '+'}{abs(exp)}"


def _fmt_x(value: float, prec: int, verb: str) -> str:
    neg, mant, exp = _float_bits(value)
    mask = (1 << 64) - 1
    if mant == 0:
        exp = 0
    mant = (mant << (60 - 52)) & mask
    while mant != 0 and mant & (1 << 60) == 0:
        mant = (mant << 1) & mask
        exp -= 1
    if 0 <= prec < 15:
        shift = prec * 4
        extra = (mant << shift) & ((1 << 60) - 1)
        mant >>= 60 - shift
        if extra | (mant & 1) > 1 << 59:
            mant += 1
        mant = (mant << (60 - shift)) & mask
        if mant & (1 << 61):
            mant >>= 1
            exp += 1
    hexdigits = "0123456789ABCDEF" if verb == "X" else "0123456789abcdef"
    out = ("-" if neg else "") + "0" + verb + str((mant >> 60) & 1)
    mant = (mant << 4) & mask
    if prec < 0 and mant != 0:
        out += "."
        while mant != 0:
            out += hexdigits[(mant >> 60) & 15]
            mant = (mant << 4) & mask
    elif prec > 0:
        out += "."
        for _ in range(prec):
            out += hexdigits[(mant >> 60) & 15]
            mant = (mant << 4) & mask
    out += "P" if verb == "X" else "p"
    out += "-" if exp < 0 else "+"
    exp = abs(exp)
    out += f"{exp:02d}"
    return out


def _parse_num(fmt: str, start: int, end: int) -> tuple[int, bool, int]:
    if start >= end:
        return 0, False, end
    num, isnum, i = 0, False, start
    while i < end and fmt[i].isdigit() and fmt[i].isascii():
        if num > 1_000_000:
            return 0, False, end
        num = num * 10 + int(fmt[i])
        isnum = True
        i += 1
    return num, isnum, i


def go_sprintf(fmt: str, args: list[Any]) -> str:
    """Go's fmt.Sprintf for int (GoInt), float and str arguments."""
    p = _Printer()
    end = len(fmt)
    arg_num = 0
    reordered = False
    good_arg_num = True
    i = 0

    def arg_number(arg_num: int, i: int) -> tuple[int, int, bool]:
        nonlocal reordered, good_arg_num
        if i >= end or fmt[i] != "[":
            return arg_num, i, False
        reordered = True
        rest = fmt[i:]
        index, width, ok = 0, 1, False
        if len(rest) >= 3:
            for j in range(1, len(rest)):
                if rest[j] == "]":
                    number, isnum, newj = _parse_num(rest, 1, j)
                    if not isnum or newj != j:
                        index, width, ok = 0, j + 1, False
                    else:
                        index, width, ok = number - 1, j + 1, True
                    break
        if ok and 0 <= index < len(args):
            return index, i + width, True
        good_arg_num = False
        return arg_num, i + width, ok

    def int_from_arg(arg_num: int) -> tuple[int, bool, int]:
        num, is_int = 0, False
        if arg_num < len(args):
            arg = args[arg_num]
            if isinstance(arg, GoInt) and arg.go_type == "int64":
                num, is_int = int(arg), True
                if not -1_000_000 <= num <= 1_000_000:
                    num, is_int = 0, False
            arg_num += 1
        return num, is_int, arg_num

    while i < end:
        good_arg_num = True
        last = i
        while i < end and fmt[i] != "%":
            i += 1
        if i > last:
            p.buf.append(fmt[last:i])
        if i >= end:
            break
        i += 1
        p.f = _Flags()
        f = p.f
        simple_done = False
        while i < end:
            c = fmt[i]
            if c == "#":
                f.sharp = True
            elif c == "0":
                f.zero = not f.minus
            elif c == "+":
                f.plus = True
            elif c == "-":
                f.minus = True
                f.zero = False
            elif c == " ":
                f.space = True
            else:
                if "a" <= c <= "z" and arg_num < len(args):
                    if c in "vw":
                        f.sharp_v, f.sharp = f.sharp, False
                        f.plus_v, f.plus = f.plus, False
                    p.print_arg(args[arg_num], c)
                    arg_num += 1
                    i += 1
                    simple_done = True
                break
            i += 1
        if simple_done:
            continue
        arg_num, i, after_index = arg_number(arg_num, i)
        if i < end and fmt[i] == "*":
            i += 1
            f.wid, f.wid_present, arg_num = int_from_arg(arg_num)
            if not f.wid_present:
                p.buf.append("%!(BADWIDTH)")
            if f.wid < 0:
                f.wid = -f.wid
                f.minus = True
                f.zero = False
            after_index = False
        else:
            f.wid, f.wid_present, i = _parse_num(fmt, i, end)
            if after_index and f.wid_present:
                good_arg_num = False
        if i + 1 < end and fmt[i] == ".":
            i += 1
            if after_index:
                good_arg_num = False
            arg_num, i, after_index = arg_number(arg_num, i)
            if i < end and fmt[i] == "*":
                i += 1
                f.prec, f.prec_present, arg_num = int_from_arg(arg_num)
                if f.prec < 0:
                    f.prec, f.prec_present = 0, False
                if not f.prec_present:
                    p.buf.append("%!(BADPREC)")
                after_index = False
            else:
                f.prec, f.prec_present, i = _parse_num(fmt, i, end)
                if not f.prec_present:
                    f.prec, f.prec_present = 0, True
        if not after_index:
            arg_num, i, after_index = arg_number(arg_num, i)
        if i >= end:
            p.buf.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            p.buf.append("%")
        elif not good_arg_num:
            p.buf.append(f"%!{verb}(BADINDEX)")
        elif arg_num >= len(args):
            p.buf.append(f"%!{verb}(MISSING)")
        else:
            if verb in "vw":
                f.sharp_v, f.sharp = f.sharp, False
                f.plus_v, f.plus = f.plus, False
            p.print_arg(args[arg_num], verb)
            arg_num += 1
    if not reordered and arg_num < len(args):
        p.f = _Flags()
        p.buf.append("%!(EXTRA ")
        for n, arg in enumerate(args[arg_num:]):
            if n:
                p.buf.append(", ")
            p.buf.append(_go_type(arg) + "=")
            p.print_arg(arg, "v")
        p.buf.append(")")
    return "".join(p.buf)
